//! How users install and run the agent: the systemd unit (verified, sandboxed, sd_notify
//! readiness and watchdog), the .deb and .rpm packages (built with cargo-deb and
//! cargo-generate-rpm, installed into a throw-away root), the example configurations.

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The unit with its ExecStart pointed at the binary under test (verify checks that it exists).
fn unit_for_test(name: &str, dir: &Path) -> PathBuf {
    let text =
        std::fs::read_to_string(root().join("systemd").join(name)).unwrap().replace("/usr/bin/logferry", env!("CARGO_BIN_EXE_logferry"));
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn the_systemd_units_verify_and_expose_at_most_2() {
    let d = tempfile::tempdir().unwrap();
    for name in ["logferry.service", "logferry-kinesis-agent.service"] {
        let unit = unit_for_test(name, d.path());
        let verify = Command::new("systemd-analyze").args(["verify"]).arg(&unit).output().expect("systemd-analyze is installed");
        let said = String::from_utf8_lossy(&verify.stderr).into_owned() + &String::from_utf8_lossy(&verify.stdout);
        assert!(verify.status.success() && said.trim().is_empty(), "{name}: systemd-analyze verify: {said}");
        let security = Command::new("systemd-analyze").args(["security", "--offline=true"]).arg(&unit).output().unwrap();
        let text = String::from_utf8_lossy(&security.stdout);
        let level: f64 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|l| l.split(": ").nth(1))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{text}{}", String::from_utf8_lossy(&security.stderr)));
        assert!(level <= 2.0, "{name}: exposure {level}\n{text}");
    }
}

/// A unit setting in seconds (`5s`, `300`, `5min`), or systemd's default when absent.
fn unit_seconds(unit: &str, key: &str, default: f64) -> f64 {
    let Some(v) = unit.lines().rev().find_map(|l| l.trim().strip_prefix(key).and_then(|r| r.strip_prefix('='))) else { return default };
    let v = v.trim();
    let (num, scale) = if let Some(n) = v.strip_suffix("min") {
        (n, 60.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1.0)
    } else {
        (v, 1.0)
    };
    num.trim().parse::<f64>().unwrap_or_else(|_| panic!("{key}={v}")) * scale
}

#[test]
fn the_kinesis_agent_unit_reads_the_kinesis_agents_environment_file_when_there_is_one() {
    let unit = std::fs::read_to_string(root().join("systemd/logferry-kinesis-agent.service")).unwrap();
    let service = unit.split("\n[Service]\n").nth(1).unwrap().split("\n[").next().unwrap();
    // "-": a host without the file starts as well
    assert!(service.lines().any(|l| l.trim() == "EnvironmentFile=-/etc/sysconfig/aws-kinesis-agent"), "{service}");
}

#[test]
fn a_crash_loop_ends_as_a_failed_unit_instead_of_restarting_for_ever() {
    for name in ["logferry.service", "logferry-kinesis-agent.service"] {
        let unit = std::fs::read_to_string(root().join("systemd").join(name)).unwrap();
        assert!(unit.lines().any(|l| l.trim() == "Restart=on-failure"), "{name}");
        // systemd's defaults: DefaultStartLimitIntervalSec=10s, DefaultStartLimitBurst=5
        let interval = unit_seconds(&unit, "StartLimitIntervalSec", 10.0);
        let burst = unit_seconds(&unit, "StartLimitBurst", 5.0);
        let restart = unit_seconds(&unit, "RestartSec", 0.1);
        // an agent that fails at once (a bad configuration) is started again every RestartSec:
        // `burst` starts must fall within the interval for systemd to give up on it
        let starts_take = (burst - 1.0) * restart;
        assert!(
            starts_take < interval,
            "{name}: {burst} starts take {starts_take} s, more than StartLimitIntervalSec={interval}: a crash loop never becomes a failed unit"
        );
        let section =
            |s: &str| unit.split(&format!("[{s}]")).nth(1).unwrap_or_default().split("\n[").next().unwrap_or_default().to_string();
        assert!(section("Unit").contains("StartLimitIntervalSec"), "{name}: the start limit belongs in [Unit]");
        // journald sources read the system journal, which needs the group
        assert!(
            unit.lines().any(|l| l.trim() == "SupplementaryGroups=adm systemd-journal"),
            "{name}: journald sources need the systemd-journal group"
        );
    }
}

#[test]
fn under_systemd_the_agent_says_ready_then_pings_the_watchdog_and_says_stopping() {
    let d = tempfile::tempdir().unwrap();
    let socket_path = d.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    std::fs::write(d.path().join("app.log"), "one\n").unwrap();
    let cfg = d.path().join("logferry.yaml");
    std::fs::write(
        &cfg,
        format!(
            "checkpoint_file: {}\nflows:\n  - id: n\n    path: {}\n    sink: {{type: file, path: {}}}\n",
            d.path().join("cp.db").display(),
            d.path().join("app.log").display(),
            d.path().join("out.log").display()
        ),
    )
    .unwrap();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_logferry"))
        .args(["run", "--config", cfg.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "600000")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut said = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 512];
    while said.iter().filter(|m: &&String| m.contains("WATCHDOG=1")).count() < 2 && Instant::now() < deadline {
        let n = socket.recv(&mut buf).expect("a message from the agent");
        said.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(said[0].contains("READY=1"), "ready first: {said:?}");
    assert!(said.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2, "{said:?}");
    unsafe_kill(agent.id(), "TERM");
    let mut stopping = false;
    while let Ok(n) = socket.recv(&mut buf) {
        if String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1") {
            stopping = true;
            break;
        }
    }
    assert!(stopping);
    assert_eq!(wait_timeout(&mut agent, Duration::from_secs(20)).expect("stops").code(), Some(0));
}

fn tool(name: &str) -> PathBuf {
    let p = root().join(".tools/cargo/bin").join(name);
    assert!(p.exists(), "{} is missing: scripts/test.sh installs cargo-deb and cargo-generate-rpm", p.display());
    p
}

/// Builds the release binary once for both packages.
fn release_binary() {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let status =
            Command::new(env!("CARGO")).args(["build", "--release", "-j2", "--bin", "logferry"]).current_dir(root()).status().unwrap();
        assert!(status.success());
    });
}

#[test]
fn the_deb_installs_a_working_agent_and_keeps_an_edited_config() {
    release_binary();
    let out = tempfile::tempdir().unwrap();
    let built = Command::new(tool("cargo-deb"))
        .args(["deb", "--no-build", "--output"])
        .arg(out.path())
        .env("PATH", format!("{}:{}", root().join(".tools/cargo/bin").display(), std::env::var("PATH").unwrap()))
        .current_dir(root())
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let deb =
        std::fs::read_dir(out.path()).unwrap().flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|e| e == "deb")).unwrap();
    // a throw-away root
    let r = tempfile::tempdir().unwrap();
    assert!(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(r.path()).status().unwrap().success());
    for f in [
        "usr/bin/logferry",
        "etc/logferry/logferry.yaml",
        "usr/lib/systemd/system/logferry.service",
        "usr/lib/systemd/system/logferry-kinesis-agent.service",
        "usr/share/doc/logferry/dashboards/grafana-dashboard.json",
    ] {
        assert!(r.path().join(f).exists(), "{f} is in the package");
    }
    let check = Command::new(r.path().join("usr/bin/logferry"))
        .args(["check", "--config"])
        .arg(r.path().join("etc/logferry/logferry.yaml"))
        .output()
        .unwrap();
    assert!(check.status.success(), "the packaged example config is valid: {}", String::from_utf8_lossy(&check.stderr));
    let control = tempfile::tempdir().unwrap();
    assert!(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(control.path()).status().unwrap().success());
    let conffiles = std::fs::read_to_string(control.path().join("conffiles")).unwrap();
    assert!(conffiles.contains("/etc/logferry/logferry.yaml"), "dpkg never overwrites an edited config: {conffiles}");
    let postinst = std::fs::read_to_string(control.path().join("postinst")).unwrap();
    assert!(postinst.contains("adduser --system --group") && postinst.contains("logferry adm"), "{postinst}");
}

#[test]
fn the_rpm_holds_the_agent_the_units_and_a_noreplace_config() {
    release_binary();
    let out = tempfile::tempdir().unwrap();
    let rpm = out.path().join("logferry.rpm");
    let built = Command::new(tool("cargo-generate-rpm")).arg("--output").arg(&rpm).current_dir(root()).output().unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let files = Command::new("rpm")
        .args(["-qp", "--queryformat", "[%{FILEFLAGS:fflags} %{FILENAMES}\\n]"])
        .arg(&rpm)
        .output()
        .expect("rpm is installed by scripts/test.sh");
    let files = String::from_utf8_lossy(&files.stdout);
    assert!(
        files.lines().any(|l| {
            // the flags come first: c (config) and n (noreplace)
            let (flags, path) = l.split_once(' ').unwrap_or_default();
            path == "/etc/logferry/logferry.yaml" && flags.contains('c') && flags.contains('n')
        }),
        "config(noreplace): {files}"
    );
    assert!(files.contains("/usr/lib/systemd/system/logferry.service") && files.contains("/usr/bin/logferry"), "{files}");
    let scripts = Command::new("rpm").args(["-qp", "--scripts"]).arg(&rpm).output().unwrap();
    assert!(String::from_utf8_lossy(&scripts.stdout).contains("useradd -r -g logferry -G adm"));
}

fn venv(bin: &str) -> PathBuf {
    let p = root().join(".venv/bin").join(bin);
    assert!(p.exists(), "{} is missing: scripts/test.sh installs it into .venv", p.display());
    p
}

#[test]
fn the_kubernetes_manifests_validate_strictly_and_their_config_checks() {
    let dir = root().join("packaging/kubernetes");
    let manifests: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "yaml")).collect();
    assert!(manifests.len() >= 4);
    let out = Command::new(venv("kubernetes-validate")).arg("--strict").args(&manifests).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let daemonset = std::fs::read_to_string(dir.join("daemonset.yaml")).unwrap();
    for needed in ["priorityClassName", "tolerations", "readOnly: true", "/var/lib/logferry", "limits"] {
        assert!(daemonset.contains(needed), "the DaemonSet has {needed}");
    }
    let ds: serde_yaml_ng::Value = serde_yaml_ng::from_str(&daemonset).unwrap();
    let c = &ds["spec"]["template"]["spec"]["containers"][0];
    // an AWS outage must not restart the pod (liveness on the engine only); readiness shows it
    assert_eq!(c["livenessProbe"]["httpGet"]["path"].as_str(), Some("/live"));
    assert_eq!(c["readinessProbe"]["httpGet"]["path"].as_str(), Some("/health"));
    // the endpoint listens on the pod's IP, and a NetworkPolicy limits who reaches it
    let args: Vec<&str> = c["args"].as_sequence().unwrap().iter().filter_map(|a| a.as_str()).collect();
    assert!(args.windows(2).any(|w| w == ["--listen", "$(POD_IP):9464"]), "{args:?}");
    let pod_ip = c["env"].as_sequence().unwrap().iter().find(|e| e["name"].as_str() == Some("POD_IP")).expect("POD_IP in the env");
    assert_eq!(pod_ip["valueFrom"]["fieldRef"]["fieldPath"].as_str(), Some("status.podIP"));
    let np: serde_yaml_ng::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join("networkpolicy.yaml")).unwrap()).unwrap();
    assert_eq!(np["kind"].as_str(), Some("NetworkPolicy"));
    assert_eq!(np["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"].as_str(), Some("logferry"));
    assert_eq!(np["spec"]["ingress"][0]["ports"][0]["port"].as_u64(), Some(9464));
    assert!(!std::fs::read_to_string(dir.join("configmap.yaml")).unwrap().contains("0.0.0.0"), "no endpoint on every interface");
    // the configuration in the ConfigMap is valid
    let cm: serde_yaml_ng::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join("configmap.yaml")).unwrap()).unwrap();
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("logferry.yaml");
    std::fs::write(&cfg, cm["data"]["logferry.yaml"].as_str().unwrap()).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_logferry"))
        .args(["check", "--config"])
        .arg(&cfg)
        .env("NODE_NAME", "ip-10-0-1-5.ec2.internal")
        .env("CLUSTER_NAME", "prod")
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    // the node's kubelet and containerd from the host's journal, mounted read-only, read by a
    // group that may, with libsystemd in the image
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(said.contains("journal: /var/log/journal, units kubelet, containerd"), "{said}");
    let mounts = c["volumeMounts"].as_sequence().unwrap();
    for path in ["/var/log", "/run/log/journal"] {
        let m = mounts.iter().find(|m| m["mountPath"].as_str() == Some(path)).unwrap_or_else(|| panic!("{path} is mounted"));
        assert_eq!(m["readOnly"].as_bool(), Some(true), "{path} read-only");
    }
    assert!(ds["spec"]["template"]["spec"]["securityContext"]["supplementalGroups"].as_sequence().is_some_and(|g| !g.is_empty()));
    // pod metadata: the node's name from the downward API, read-only RBAC for the service account
    let node = c["env"].as_sequence().unwrap().iter().find(|e| e["name"].as_str() == Some("NODE_NAME")).expect("NODE_NAME in the env");
    assert_eq!(node["valueFrom"]["fieldRef"]["fieldPath"].as_str(), Some("spec.nodeName"));
    assert!(said.contains("pod metadata (node, container image, labels) from the in-cluster API server"), "{said}");
    let rbac = std::fs::read_to_string(dir.join("rbac.yaml")).unwrap();
    let docs: Vec<serde_yaml_ng::Value> = rbac.split("\n---\n").map(|d| serde_yaml_ng::from_str(d).unwrap()).collect();
    let role = docs.iter().find(|d| d["kind"].as_str() == Some("ClusterRole")).expect("a ClusterRole");
    for rule in role["rules"].as_sequence().unwrap() {
        for verb in rule["verbs"].as_sequence().unwrap() {
            assert!(["get", "list", "watch"].contains(&verb.as_str().unwrap()), "read only: {verb:?}");
        }
    }
    let binding = docs.iter().find(|d| d["kind"].as_str() == Some("ClusterRoleBinding")).expect("a ClusterRoleBinding");
    assert_eq!(binding["subjects"][0]["name"].as_str(), ds["spec"]["template"]["spec"]["serviceAccountName"].as_str());
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("apt-get install -y --no-install-recommends libsystemd0="), "libsystemd in the image");
}

#[test]
fn the_dockerfile_passes_hadolint() {
    let out = Command::new(venv("hadolint")).arg(root().join("Dockerfile")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    assert!(text.contains("AS build") && text.contains("USER 10001"), "multi-stage, not root");
}
