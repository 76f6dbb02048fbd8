//! The real node leaves the host as it found it: the sysctls the kubelet would set, IP
//! forwarding, every iptables table, the network links, the host's mounts, the host paths
//! containerd and the kubelet write regardless of their configuration, the cgroups and the
//! processes. Checked around a node that ran a Pod, in its own test binary, because only one node
//! runs on a machine at a time and the node suite's lives until its process exits.

use std::collections::BTreeMap;
use std::process::Command;

use crate_test_cluster::ControlPlane;
use crate_test_cluster::node::{CGROUP_ROOT, Node, PAUSE_IMAGE};

/// Everything of the host the node could change, as text to compare.
fn host() -> BTreeMap<&'static str, String> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_else(|e| format!("<{e}>"));
    let run = |program: &str, args: &[&str]| {
        Command::new(program).args(args).output().map_or_else(
            |e| format!("<{e}>"),
            |o| String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let mut state = BTreeMap::new();
    for (name, path) in [
        ("kernel.panic", "/proc/sys/kernel/panic"),
        ("kernel.panic_on_oops", "/proc/sys/kernel/panic_on_oops"),
        ("vm.overcommit_memory", "/proc/sys/vm/overcommit_memory"),
        ("net.ipv4.ip_forward", "/proc/sys/net/ipv4/ip_forward"),
    ] {
        state.insert(name, read(path));
    }
    // iptables-save prints counters and a date: keep the rules only.
    let rules: String = ["filter", "nat", "mangle", "raw"]
        .iter()
        .map(|table| run("iptables", &["-w", "-t", table, "-S"]))
        .collect();
    state.insert("iptables", rules);
    let links: Vec<String> = run("ip", &["-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|name| name.trim().to_owned())
        .collect();
    let links = links.join("\n");
    state.insert("links", links);
    let mounts: String = read("/proc/self/mountinfo")
        .lines()
        .map(|l| {
            l.split_whitespace()
                .skip(3)
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
                + "\n"
        })
        .collect();
    state.insert("mounts", mounts);
    let paths = [
        "/var/lib/kubelet",
        "/var/log/containers",
        "/var/log/pods",
        "/run/containerd",
        "/var/lib/containerd",
        "/var/lib/cni",
        "/etc/cni/net.d",
        "/run/netns",
    ]
    .iter()
    .map(|p| format!("{p} {}", std::path::Path::new(p).exists()))
    .collect::<Vec<_>>()
    .join("\n");
    state.insert("paths", paths);
    let cgroups: Vec<String> = std::fs::read_dir("/sys/fs/cgroup")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let root = e.path().join(CGROUP_ROOT);
                    format!("{} {}", e.path().display(), root.exists())
                })
                .collect()
        })
        .unwrap_or_default();
    state.insert("cgroups", cgroups.join("\n"));
    // From /proc, not `ps`: a machine without procps would make both sides an equal error.
    let mut processes: Vec<String> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
        .map(|c| c.trim().to_owned())
        .filter(|c| {
            ["containerd", "kubelet", "kube-scheduler", "pause", "runc"]
                .iter()
                .any(|n| c.starts_with(n))
        })
        .collect();
    processes.sort();
    let processes = processes.join("\n");
    state.insert("processes", processes);
    state
}

#[test]
fn a_node_that_ran_a_pod_leaves_the_host_as_it_found_it() {
    let plane = ControlPlane::start().expect("control plane");
    // The node suite's janitor may still be putting the host back after its process ended.
    Node::wait_for_earlier_nodes().expect("earlier nodes cleaned up");
    let before = host();
    {
        let node = Node::start(&plane).expect("node");
        let pod = format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"probe","namespace":"default"}},"spec":{{"containers":[{{"name":"c","image":"{PAUSE_IMAGE}","imagePullPolicy":"Never"}}]}}}}"#
        );
        let file = plane.dir().join("probe.json");
        std::fs::write(&file, pod).expect("write the pod");
        let applied = plane
            .kubectl()
            .args(["apply", "-f"])
            .arg(&file)
            .output()
            .expect("kubectl");
        assert!(
            applied.status.success(),
            "{}",
            String::from_utf8_lossy(&applied.stderr)
        );
        let ready = plane
            .kubectl()
            .args([
                "wait",
                "--for=condition=Ready",
                "pod/probe",
                "--timeout=120s",
            ])
            .output()
            .expect("kubectl");
        assert!(
            ready.status.success(),
            "the pod never ran:\n{}",
            node.logs()
        );
        // While it runs, the host does have the node's bridge and processes: the comparison
        // below can fail.
        let during = host();
        assert!(during["links"].contains("crateop0"));
        assert!(
            during["processes"].contains("kubelet"),
            "{}",
            during["processes"]
        );
    }
    // Dropping the node waits for its janitor, so everything is back by now.
    let after = host();
    for (what, was) in &before {
        assert_eq!(&after[what], was, "{what} changed");
    }
}
