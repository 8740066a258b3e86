//! A mixed environment on the real engines: a container and a VM (the debian-bookworm box
//! under libvirt) on one network, provisioned (the VM over SSH), talking to each other
//! both ways, and destroyed without leftovers in Docker or libvirt; a VM that cannot be
//! built, or that forces KVM where KVM cannot run, fails by name.

use crate::support::engines::{
    build_debian_box, labelled_counts, libvirt_domains, one_vm_test_at_a_time,
};
use crate::support::{machine, repo, require_docker, require_libvirt, subnet, TestEnv};

#[test]
fn a_container_and_a_vm_share_a_network_and_provisioning_reaches_the_vm() {
    require_docker();
    require_libvirt();
    let _vm = one_vm_test_at_a_time();
    let sub = subnet();
    let net = sub.trim_end_matches(".0/24");
    let recipe = repo().join("boxes/debian-bookworm");
    let env = TestEnv::new(
        "mixed",
        &format!(
            r#"
[box.debian]
recipe = "{recipe}"

[network.lan]
subnet = "{sub}"

[machine.web]
backend = "docker"
box = "busybox"
networks = [{{ name = "lan", address = "{net}.10" }}]
command = "httpd -f -p 80 -h /var/www"

[[machine.web.provision]]
shell = "echo 'from the container' > /var/www/index.html"

[machine.vm]
backend = "libvirt"
box = "debian"
memory = "384M"
networks = [{{ name = "lan", address = "{net}.20" }}]
depends_on = ["web"]

[[machine.vm.provision]]
file = "conf/app.conf"
destination = "/etc/app.conf"

[[machine.vm.provision]]
script = "serve.sh"
args = ["from the vm"]

[[machine.vm.provision]]
ansible = "site.yml"
extra_vars = {{ greeting = "hello from ansible" }}
"#,
            recipe = recipe.display()
        ),
    );
    env.write("conf/app.conf", "setting = 42\n");
    env.write(
        "site.yml",
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: leave a marker\n      ansible.builtin.copy:\n        dest: /etc/hdev-ansible\n        content: \"{{ greeting }} on {{ inventory_hostname }}\\n\"\n",
    );
    env.write(
        "serve.sh",
        "#!/bin/sh\nset -e\nmkdir -p /srv/www\necho \"$1\" > /srv/www/index.html\n\
         setsid nohup python3 -m http.server 8000 --directory /srv/www >/var/log/www.log 2>&1 < /dev/null &\n\
         for i in $(seq 1 50); do wget -q -O /dev/null http://127.0.0.1:8000/ && exit 0; sleep 0.2; done\nexit 1\n",
    );
    build_debian_box(&env, &recipe);

    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    let instance = env.instance();

    // The file step's content is read back from the VM.
    let conf = env.run(&["exec", "vm", "--", "cat", "/etc/app.conf"]);
    assert_eq!(
        (conf.code, conf.stdout.trim()),
        (0, "setting = 42"),
        "{conf}"
    );
    // The ansible step ran against this machine, with its extra variables.
    let marker = env.run(&["exec", "vm", "--", "cat", "/etc/hdev-ansible"]);
    assert_eq!(marker.stdout.trim(), "hello from ansible on vm", "{marker}");
    // No login without the environment's key: root's password is locked in the box
    // (issue 16, case 7: it used to be empty, with a console login).
    let shadow = env.ok(&[
        "exec",
        "vm",
        "--",
        "sh",
        "-c",
        "getent shadow root | cut -d: -f2",
    ]);
    assert!(
        shadow.trim().starts_with('!') || shadow.trim().starts_with('*'),
        "root's password field: {shadow:?}"
    );
    // Exit codes pass through SSH.
    let code = env.run(&["exec", "vm", "--", "sh", "-c", "exit 3"]);
    assert_eq!(code.code, 3, "{code}");
    // The VM reaches the container, and the container reaches the VM, by address and
    // by name (the VM's /etc/hosts block, the container's hosts entries).
    for host in [format!("{net}.10"), "web".to_string()] {
        let to_web = env.run(&[
            "exec",
            "vm",
            "--",
            "wget",
            "-q",
            "-O-",
            &format!("http://{host}/"),
        ]);
        assert_eq!(to_web.stdout.trim(), "from the container", "{to_web}");
    }
    let named = env.run(&["exec", "web", "--", "wget", "-q", "-O-", "http://vm:8000/"]);
    assert_eq!(named.stdout.trim(), "from the vm", "{named}");
    let to_vm = env.run(&[
        "exec",
        "web",
        "--",
        "wget",
        "-q",
        "-O-",
        &format!("http://{net}.20:8000/"),
    ]);
    assert_eq!(to_vm.stdout.trim(), "from the vm", "{to_vm}");

    let status = env.status();
    let vm = status["machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "vm")
        .expect("vm in status")
        .clone();
    assert_eq!(vm["backend"], "libvirt", "{status}");
    assert_eq!(vm["state"], "running", "{status}");
    assert_eq!(libvirt_domains(&instance).len(), 1);

    // A second up changes nothing.
    let again = env.run(&["up"]);
    assert_eq!(again.code, 0, "{again}");
    let said = format!("{}{}", again.stdout, again.stderr);
    assert!(
        said.contains("nothing to do: 2 machines up to date"),
        "{again}"
    );

    let destroy = env.run(&["destroy", "-y"]);
    assert_eq!(destroy.code, 0, "{destroy}");
    assert!(destroy.stdout.contains("1 VM(s)"), "{destroy}");
    assert!(libvirt_domains(&instance).is_empty(), "no domain is left");
    let pool = std::fs::read_dir("/var/lib/libvirt/images/hdev")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().contains(&instance))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(pool, 0, "no overlay is left");
    assert_eq!(labelled_counts(&instance), (0, 0, 0));
}

#[test]
fn a_machine_that_forces_kvm_where_kvm_cannot_run_guests_is_refused_by_name() {
    require_docker();
    require_libvirt();
    let probe = hdev::host::KvmProbe::read();
    if probe.usable() {
        eprintln!("note: this host can run KVM guests; the refusal cannot happen here");
        return;
    }
    let recipe = repo().join("boxes/debian-bookworm");
    let sub = subnet();
    let env = TestEnv::new(
        "kvm",
        &format!(
            r#"
[box.debian]
recipe = "{recipe}"

[network.lan]
subnet = "{sub}"

[machine.vm]
backend = "libvirt"
box = "debian"
accel = "kvm"
networks = ["lan"]
"#,
            recipe = recipe.display()
        ),
    );
    build_debian_box(&env, &recipe);
    let up = env.run(&["up"]);
    assert_eq!(up.code, 1, "{up}");
    assert!(
        up.stderr.contains("machine `vm`") && up.stderr.contains("`accel = \"kvm\"` was asked for"),
        "{up}"
    );
    assert!(up.stderr.contains(probe.explain()), "{up}");
}

#[test]
fn a_vm_that_cannot_be_built_stops_up_before_anything_is_created() {
    require_docker();
    // `up` and `status` connect to libvirtd for an environment with a VM.
    require_libvirt();
    let env = TestEnv::new(
        "mixed",
        r#"
[machine.vm]
backend = "libvirt"
box = "busybox"

[machine.needs-vm]
backend = "docker"
box = "busybox"
depends_on = ["vm"]

[machine.ct]
backend = "docker"
box = "busybox"
"#,
    );
    // The busybox box has a root file system for Docker and nothing a VM boots from, and
    // the VM is on no network: both are said at once, and nothing is made (it used to
    // create the container, then fail on the VM).
    let up = env.run(&["up"]);
    assert_eq!(up.code, 1, "{up}");
    assert!(up.stderr.contains("nothing was created"), "{up}");
    assert!(
        up.stderr
            .contains("machine `vm`: box `busybox` has no `libvirt-disk` artifact"),
        "{up}"
    );
    assert!(up.stderr.contains("VM `vm` is on no network"), "{up}");
    let st = env.status();
    for m in ["ct", "vm", "needs-vm"] {
        assert_eq!(machine(&st, m)["state"], "not created", "{st}");
    }
}
