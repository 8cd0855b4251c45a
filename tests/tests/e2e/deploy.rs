//! The deploy artifacts start as shipped (issue 19). No docker or systemd here: each test lays
//! out the shipped `config/` exactly as `deploy/Dockerfile` / `deploy/portcullis.service` do,
//! under a temp root (every absolute path of the artifact is prefixed with it), and runs the
//! artifact's own command lines and environment — read from the files, so a change there is
//! tested — as an unprivileged uid (65534) that can write nothing but the state dir (and, for
//! the image, `/tmp`): the image's read-only root filesystem, systemd's `ProtectSystem=strict`.
//! The only edits to the shipped config: its listen ports become 0 and its backend the test's.
//! Needs root (to drop to another uid); skipped otherwise.
use portcullis_tests::{free_dead_addr, parse_listening_line, wait_until, Client, TempDir, Upstream};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis-e2e");
const UID: u32 = 65534;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Root, with `setpriv` to drop to another uid (CI runs as root).
fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
        && Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// The binary at `dest` (a hard link when possible: it is large), executable by everyone.
fn install_bin(dest: &Path) {
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    if std::fs::hard_link(BIN, dest).is_err() {
        std::fs::copy(BIN, dest).unwrap();
    }
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

fn mkdir(p: &Path, mode: u32, owner: Option<u32>) {
    std::fs::create_dir_all(p).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    if let Some(uid) = owner {
        std::os::unix::fs::chown(p, Some(uid), Some(uid)).unwrap();
    }
}

/// A temp root: the artifact's absolute paths live under it. Owned by root, readable by all.
struct Root {
    dir: TempDir,
}

impl Root {
    fn new(name: &str) -> Root {
        let dir = TempDir::new(name);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Root { dir }
    }

    fn at(&self, abs: &str) -> PathBuf {
        self.dir.path().join(abs.trim_start_matches('/'))
    }

    /// `text` (words separated by spaces) with each word under one of `abs` (absolute paths of
    /// the artifact) moved under the root.
    fn map(&self, text: &str, abs: &[&str]) -> String {
        let word = |w: &str| {
            if abs.iter().any(|a| w.starts_with(a)) {
                self.at(w).display().to_string()
            } else {
                w.to_string()
            }
        };
        text.split(' ').map(word).collect::<Vec<_>>().join(" ")
    }

    /// The shipped `config/`, copied to `dest` as the artifact does; listen ports 0, the
    /// backend the test's upstream. Root-owned, read-only to the service's uid.
    fn install_config(&self, dest: &str, backend: SocketAddr, listen: (&str, &str)) {
        let to = self.at(dest);
        copy_dir(&repo().join("config"), &to);
        let path = to.join("gateway.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut edited = text.clone();
        for (from, to) in [
            ("proxy: 0.0.0.0:8080", format!("proxy: {}", listen.0)),
            ("control: 127.0.0.1:9090", format!("control: {}", listen.1)),
            ("backends: [\"127.0.0.1:3000\"]", format!("backends: [\"{backend}\"]")),
        ] {
            assert_eq!(edited.matches(from).count(), 1, "the shipped gateway.yaml no longer has `{from}`");
            edited = edited.replace(from, &to);
        }
        std::fs::write(&path, edited).unwrap();
        // The binary, where the artifact puts it.
        install_bin(&self.at("/usr/local/bin/portcullis"));
    }
}

/// Splits a command line the way systemd does for these simple lines (no quoting used).
fn words(line: &str) -> Vec<String> {
    line.split_whitespace().map(String::from).collect()
}

/// Runs `argv` as the unprivileged uid with exactly `env` (plus PATH), output collected.
fn spawn_as_user(argv: &[String], env: &[(String, String)], out: &Arc<Mutex<Vec<String>>>) -> Child {
    spawn_as(UID, argv, env, out)
}

/// [`spawn_as_user`] as `uid`.
fn spawn_as(uid: u32, argv: &[String], env: &[(String, String)], out: &Arc<Mutex<Vec<String>>>) -> Child {
    let mut cmd = Command::new("setpriv");
    cmd.args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into(), "--".into()]);
    cmd.args(argv).env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").current_dir("/");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    for pipe in [
        child.stdout.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        child.stderr.take().map(|p| Box::new(p) as _),
    ]
    .into_iter()
    .flatten()
    {
        let out = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                out.lock().unwrap().push(line);
            }
        });
    }
    child
}

fn listening(out: &Arc<Mutex<Vec<String>>>, nth: usize) -> (SocketAddr, SocketAddr) {
    let mut found = None;
    let ok = wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        found = out.lock().unwrap().iter().filter_map(|l| parse_listening_line(l)).nth(nth);
        found.is_some()
    });
    assert!(ok, "no listening line; output:\n{}", out.lock().unwrap().join("\n"));
    let (proxy, control) = found.unwrap();
    (proxy, control.unwrap())
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
}

/// Sends SIGTERM to every pid given, on drop (a failed assertion leaves nothing running).
struct Reaper(Vec<u32>);
impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in &self.0 {
            if alive(*pid) {
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
        }
    }
}

/// `/health`, `/ready` and a proxied request, as the probes and a client would.
fn serves(proxy: SocketAddr, control: SocketAddr, up: &Upstream, path: &str) {
    let c = Client::new();
    assert_eq!(c.get(&format!("http://{control}/health"), &[]).status, 200);
    let ready = c.get(&format!("http://{control}/ready"), &[]);
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["checks"]["state"], true);
    let r = c.get(&format!("http://{proxy}{path}"), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().unwrap().path, path);
}

/// The Dockerfile's final stage: `COPY config/ <dest>`, the `ENV`s, `ENTRYPOINT` + `CMD`.
struct Image {
    config_dest: String,
    env: Vec<(String, String)>,
    argv: Vec<String>,
    user: String,
}

fn json_array(rest: &str) -> Vec<String> {
    serde_json::from_str(rest.trim()).expect("exec-form JSON array")
}

fn parse_dockerfile(text: &str) -> Image {
    let stage = text.rsplit("\nFROM ").next().unwrap();
    let (mut dest, mut env, mut entry, mut cmd, mut user) = (None, Vec::new(), Vec::new(), Vec::new(), None);
    for line in stage.lines() {
        let line = line.trim();
        if let Some(r) = line.strip_prefix("COPY config/ ") {
            dest = Some(r.trim().trim_end_matches('/').to_string());
        } else if let Some(r) = line.strip_prefix("ENV ") {
            let (k, v) = r.split_once('=').expect("ENV key=value");
            env.push((k.trim().to_string(), v.trim().to_string()));
        } else if let Some(r) = line.strip_prefix("ENTRYPOINT ") {
            entry = json_array(r);
        } else if let Some(r) = line.strip_prefix("CMD ") {
            cmd = json_array(r);
        } else if let Some(r) = line.strip_prefix("USER ") {
            user = Some(r.trim().to_string());
        }
    }
    entry.extend(cmd);
    Image { config_dest: dest.expect("COPY config/"), env, argv: entry, user: user.expect("USER") }
}

#[test]
fn the_image_starts_as_shipped_as_a_non_root_uid_that_can_write_only_its_state_dir() {
    if !is_root() {
        eprintln!("skipped: needs root and setpriv to run the gateway as another uid");
        return;
    }
    let image = parse_dockerfile(&std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap());
    assert!(!image.user.starts_with("root") && !image.user.starts_with('0'), "the image runs as {}", image.user);
    assert!(image.user.split(':').all(|p| p.parse::<u32>().is_ok()), "USER must be numeric for runAsNonRoot");
    let up = Upstream::start("app");
    let root = Root::new("pc-image");
    root.install_config(&image.config_dest, up.addr(), ("127.0.0.1:0", "127.0.0.1:0"));
    // What the image can write: the state volume (chowned to the user) and /tmp (1777); the rest
    // of the root filesystem, /etc/portcullis included, is root's.
    let state = image.env.iter().find(|(k, _)| k == "PORTCULLIS_STATE_DIR").map(|(_, v)| v.clone());
    let state = state.expect("the image sets PORTCULLIS_STATE_DIR (the shipped state_dir is relative to /etc)");
    mkdir(&root.at(&state), 0o750, Some(UID));
    mkdir(&root.at("/tmp"), 0o1777, None);
    let abs = ["/usr/local/bin/portcullis", "/etc/portcullis", "/var/lib/portcullis", "/tmp/"];
    let argv: Vec<String> = image.argv.iter().map(|a| root.map(a, &abs)).collect();
    let env: Vec<(String, String)> = image.env.iter().map(|(k, v)| (k.clone(), root.map(v, &abs))).collect();

    let out = Arc::new(Mutex::new(Vec::new()));
    let mut child = spawn_as_user(&argv, &env, &out);
    let _reaper = Reaper(vec![child.id()]);
    let (proxy, control) = listening(&out, 0);
    serves(proxy, control, &up, "/api/orders");
    // The state went where the image mounts its volume, and the config dir stayed untouched.
    assert!(root.at(&state).join("events").is_dir(), "state in the volume");
    assert!(
        !root.at("/etc/var").exists() && !root.at("/etc/portcullis/var").exists(),
        "nothing written beside the config"
    );
    assert!(root.at("/tmp/portcullis.pid").is_file() || env.iter().any(|(k, _)| k == "PORTCULLIS_PID_FILE"));
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    assert!(status.success(), "SIGTERM: clean exit, got {status}");
}

/// The unit's `[Service]` lines, in order.
fn unit_lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

#[test]
fn the_systemd_unit_starts_daemonized_and_a_reload_hands_over_to_the_process_its_pidfile_names() {
    if !is_root() {
        eprintln!("skipped: needs root and setpriv to run the gateway as another uid");
        return;
    }
    let text = std::fs::read_to_string(repo().join("deploy/portcullis.service")).unwrap();
    let lines = unit_lines(&text);
    let get = |k: &str| lines.iter().filter(|(key, _)| key == k).map(|(_, v)| v.clone()).collect::<Vec<_>>();
    assert_eq!(get("Type"), ["forking"], "Type=simple loses the new process on reload");
    let pid_file = get("PIDFile").pop().expect("PIDFile=");
    assert_eq!(get("ProtectSystem"), ["strict"]);
    // Writable under ProtectSystem=strict: StateDirectory and RuntimeDirectory (owned by User=).
    let state = format!("/var/lib/{}", get("StateDirectory").pop().expect("StateDirectory="));
    let run = format!("/run/{}", get("RuntimeDirectory").pop().expect("RuntimeDirectory="));
    assert!(pid_file.starts_with(&format!("{run}/")), "PIDFile in the RuntimeDirectory: {pid_file}");

    let up = Upstream::start("app");
    let root = Root::new("pc-unit");
    // A graceful upgrade finds the sockets by the configured address: real ports (free ones),
    // not 0.
    let (p, c) = (free_dead_addr().to_string(), free_dead_addr().to_string());
    root.install_config("/etc/portcullis", up.addr(), (&p, &c));
    mkdir(&root.at(&state), 0o750, Some(UID));
    mkdir(&root.at(&run), 0o750, Some(UID));
    let abs = ["/usr/local/bin/portcullis", "/etc/portcullis", state.as_str(), run.as_str()];
    let env: Vec<(String, String)> = get("Environment")
        .iter()
        .map(|e| {
            let (k, v) = e.split_once('=').unwrap();
            (k.to_string(), root.map(v, &abs))
        })
        .collect();
    let pid_path = root.at(&pid_file);
    let read_pid = || std::fs::read_to_string(&pid_path).ok().and_then(|s| s.trim().parse::<u32>().ok());
    let out = Arc::new(Mutex::new(Vec::new()));
    let run_line = |line: &str, mainpid: Option<u32>| {
        let line = root.map(&line.replace("$MAINPID", &mainpid.map(|p| p.to_string()).unwrap_or_default()), &abs);
        let status = spawn_as_user(&words(&line), &env, &out).wait().unwrap();
        assert!(status.success(), "`{line}`: {status}\n{}", out.lock().unwrap().join("\n"));
    };

    for pre in get("ExecStartPre") {
        run_line(&pre, None);
    }
    let start = get("ExecStart").pop().expect("ExecStart=");
    run_line(&start, None);
    // Type=forking: ExecStart returned once serving; the PID file names the main process.
    let first = read_pid().expect("the PID file after ExecStart");
    let mut reaper = Reaper(vec![first]);
    assert!(alive(first));
    let (proxy, control) = listening(&out, 0);
    serves(proxy, control, &up, "/api/before");
    assert!(
        root.at(&state).join("audit").is_dir() || root.at(&state).join("events").is_dir(),
        "state in StateDirectory"
    );

    // systemctl reload: ExecReload lines in order, $MAINPID the PID file's.
    let reload = get("ExecReload");
    assert!(!reload.is_empty(), "ExecReload=");
    for line in &reload {
        run_line(line, Some(first));
    }
    let mut second = None;
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
            second = read_pid().filter(|p| *p != first);
            second.is_some()
        }),
        "the PID file names the new process after a reload\n{}",
        out.lock().unwrap().join("\n")
    );
    let second = second.unwrap();
    reaper.0.push(second);
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(50), || !alive(first)),
        "the old process drains and exits"
    );
    assert!(alive(second), "the new process (the unit's main PID now) runs");
    // Same listening sockets, handed over: the same addresses serve.
    let (proxy2, control2) = listening(&out, 1);
    assert_eq!((proxy2, control2), (proxy, control));
    serves(proxy, control, &up, "/api/after");
}

/// The block under `key: |` in a manifest (`indent`: the key's indentation), dedented.
fn literal_block(text: &str, key: &str, indent: usize) -> Option<String> {
    let head = format!("{}{key}: |", " ".repeat(indent));
    let mut lines = text.lines().skip_while(|l| *l != head);
    lines.next()?;
    let body: Vec<&str> = lines.take_while(|l| l.is_empty() || l.starts_with(&" ".repeat(indent + 2))).collect();
    let body: Vec<&str> = body.iter().map(|l| l.get(indent + 2..).unwrap_or("")).collect();
    Some(format!("{}\n", body.join("\n").trim_end()))
}

/// `- { name: K, value: V }` entries of the container's `env:`.
fn env_entries(deployment: &str) -> Vec<(String, String)> {
    deployment
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- { name: "))
        .filter_map(|r| r.strip_suffix(" }"))
        .filter_map(|r| r.split_once(", value: "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_kubernetes_manifests_are_hardened_and_their_config_and_rules_start_the_gateway() {
    let k8s = repo().join("deploy/k8s");
    let read = |f: &str| std::fs::read_to_string(k8s.join(f)).unwrap();
    let deployment = read("deployment.yaml");
    for must in [
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "capabilities: { drop: [\"ALL\"] }",
        "seccompProfile: { type: RuntimeDefault }",
        "readinessProbe:",
        "livenessProbe:",
        "requests: {",
        "limits: {",
        "secretName: portcullis-config",
        "configMap: { name: portcullis-rules }",
    ] {
        assert!(deployment.contains(must), "deployment.yaml lacks `{must}`");
    }
    let image = deployment.lines().find_map(|l| l.trim().strip_prefix("image: ")).expect("image:");
    let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
    assert!(!tag.is_empty() && tag != "latest" && !tag.contains('/'), "pinned image tag, got `{image}`");
    assert!(read("pdb.yaml").contains("kind: PodDisruptionBudget"));
    let np = read("networkpolicy.yaml");
    assert!(np.contains("kind: NetworkPolicy") && np.contains("port: 9090"), "the control port is policed");

    // The rules ConfigMap is the shipped rule set.
    let rules_cm = read("rules-configmap.yaml");
    let mut shipped: Vec<_> =
        std::fs::read_dir(repo().join("config/rules")).unwrap().map(|e| e.unwrap().path()).collect();
    shipped.sort();
    let root = Root::new("pc-k8s");
    let rules_dir = root.at("/etc/portcullis/rules");
    std::fs::create_dir_all(&rules_dir).unwrap();
    for f in &shipped {
        let name = f.file_name().unwrap().to_str().unwrap();
        let block =
            literal_block(&rules_cm, name, 2).unwrap_or_else(|| panic!("{name} missing from rules-configmap.yaml"));
        assert_eq!(
            block,
            std::fs::read_to_string(f).unwrap(),
            "rules-configmap.yaml's {name} differs from config/rules/"
        );
        std::fs::write(rules_dir.join(name), block).unwrap();
    }

    // The config Secret's gateway.yaml, mounted where the Deployment mounts it, with the
    // Deployment's args and env, as its runAsUser, read-only root but the state and /tmp
    // emptyDirs: validates, starts, serves; the control listener is on 0.0.0.0 (the kubelet
    // probes it), which the test binds to loopback.
    let secret = read("secret.yaml");
    let gw = literal_block(&secret, "gateway.yaml", 2).expect("gateway.yaml in secret.yaml");
    assert!(gw.contains("control: 0.0.0.0:9090"), "the kubelet must reach the control port");
    let up = Upstream::start("app");
    let backend = gw.lines().find_map(|l| l.trim().strip_prefix("backends: ")).unwrap().to_string();
    // Fleet mode: the manifests name their Redis (redis.yaml's Service, the password from its
    // Secret); here a real redis-server with that password stands in for it.
    let redis_yaml = read("redis.yaml");
    assert!(redis_yaml.contains("kind: Service") && redis_yaml.contains("name: portcullis-redis"));
    assert!(deployment.contains("secretKeyRef: { name: portcullis-redis, key: password }"));
    assert!(
        gw.contains("redis_url: \"redis://portcullis-redis:6379\"")
            && gw.contains("password_env: PORTCULLIS_REDIS_PASSWORD")
    );
    let redis = crate::fleet::Redis::start_with_password(None, "k8s-test-password");
    let redis_url =
        redis.as_ref().map_or("redis://127.0.0.1:1".to_string(), |r| format!("redis://127.0.0.1:{}", r.port));
    let gw = gw
        .replace("redis://portcullis-redis:6379", &redis_url)
        .replace("proxy: 0.0.0.0:8080", "proxy: 127.0.0.1:0")
        .replace("control: 0.0.0.0:9090", "control: 127.0.0.1:0")
        .replace(&backend, &format!("[\"{}\"]", up.addr()))
        .replace("dir: /etc/portcullis/rules", &format!("dir: {}", rules_dir.display()));
    let conf = root.at("/etc/portcullis/gateway/gateway.yaml");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    std::fs::write(&conf, gw).unwrap();
    if !is_root() {
        eprintln!("skipped the start: needs root and setpriv to run the gateway as another uid");
        return;
    }
    let uid: u32 = deployment.lines().find_map(|l| l.trim().strip_prefix("runAsUser: ")).unwrap().parse().unwrap();
    assert_ne!(uid, 0);
    let args: Vec<String> =
        json_array(deployment.lines().find_map(|l| l.trim().strip_prefix("args: ")).expect("args:"));
    let abs = ["/etc/portcullis", "/var/lib/portcullis", "/tmp/"];
    let mut env: Vec<(String, String)> =
        env_entries(&deployment).into_iter().map(|(k, v)| (k, root.map(&v, &abs))).collect();
    env.push(("PORTCULLIS_REDIS_PASSWORD".into(), "k8s-test-password".into()));
    // fsGroup makes the emptyDir the pod's.
    mkdir(&root.at("/var/lib/portcullis"), 0o750, Some(uid));
    mkdir(&root.at("/tmp"), 0o1777, None);
    install_bin(&root.at("/usr/local/bin/portcullis"));
    let mut argv = vec![root.at("/usr/local/bin/portcullis").display().to_string()];
    argv.extend(args.iter().map(|a| root.map(a, &abs)));
    let out = Arc::new(Mutex::new(Vec::new()));
    let mut validate = argv.clone();
    validate[1] = "validate".into();
    let status = spawn_as(uid, &validate, &env, &out).wait().unwrap();
    assert!(status.success(), "validate: {}", out.lock().unwrap().join("\n"));
    let mut child = spawn_as(uid, &argv, &env, &out);
    let _reaper = Reaper(vec![child.id()]);
    let (proxy, control) = listening(&out, 0);
    serves(proxy, control, &up, "/api/k8s");
    // The pod joined the fleet (it announced itself in the store, with the password).
    if let Some(r) = &redis {
        assert!(portcullis_tests::wait_until(Duration::from_secs(3), Duration::from_millis(20), || r.cli(&[
            "-a",
            "k8s-test-password",
            "--no-auth-warning",
            "ZCARD",
            "portcullis:prod:instances"
        ]) == "1"));
    }
    assert!(root.at("/var/lib/portcullis/events").is_dir());
    // The kubelet stops a pod with SIGTERM: a clean exit.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    assert!(status.success(), "SIGTERM: clean exit, got {status}");
}
