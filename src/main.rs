fn main() {
    hdev::exit(hdev::run());
}
