//! The state of the (shared, noisy) machine a run measured on.

use crate::report::Machine;

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Other compilers on the machine (it is shared): they make a run noisy.
pub fn builds_running() -> Vec<String> {
    let Ok(out) = std::process::Command::new("pgrep")
        .args(["-a", "cargo|rustc"])
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| line.chars().take(100).collect())
        .collect()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default()
}

/// The machine at the end of a run that started with `load_before` and saw `builds` then.
pub fn machine(load_before: String, mut builds: Vec<String>) -> Machine {
    builds.extend(builds_running());
    Machine {
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model: cpu_model(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        load_before,
        load_after: load_average(),
        builds_running: builds,
    }
}
