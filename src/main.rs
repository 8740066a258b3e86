fn main() {
    std::process::exit(hdev::run());
}
