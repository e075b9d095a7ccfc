//! `duet report`, read as a change board would: the HTML file opened in a real headless
//! Chromium (Debian package `chromium`; .ci/run installs it), whose DOM must hold every step
//! that ran, the timeline, the DAG of every request, the failure and the operator's skip; with
//! every network request Chromium would make sent to a proxy the test runs on 127.0.0.1, which
//! must see none. The screenshot is kept in the target directory.

use std::io::Read as _;
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::machine::Machine;

/// A proxy that accepts connections on 127.0.0.1 and records the first line of each request
/// (never answering it): Chromium's own background traffic goes there, and so nowhere else.
struct Proxy {
    port: u16,
}

impl Proxy {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port on 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        // The thread ends with the test binary; it only ever talks to the browser the test runs.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut first = [0_u8; 256];
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = (&stream).read(&mut first);
            }
        });
        Self { port }
    }
}

/// Headless Chromium driven through its `DevTools` protocol on a pipe (`--remote-debugging-pipe`:
/// JSON messages ended by NUL on fds 3 and 4, here two FIFOs), as root, with a fresh profile.
struct Browser {
    child: std::process::Child,
    to: std::fs::File,
    from: std::io::BufReader<std::fs::File>,
    next_id: u64,
    /// Every event that came while waiting for answers.
    events: Vec<Value>,
    _dir: tempfile::TempDir,
}

impl Browser {
    fn start(program: &str, proxy: &Proxy) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (input, output) = (dir.path().join("in"), dir.path().join("out"));
        for fifo in [&input, &output] {
            nix::unistd::mkfifo(fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        }
        let flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
            "--remote-debugging-pipe",
        ];
        let script = format!(
            "exec \"$0\" {} --user-data-dir=\"$1\" --proxy-server=http://127.0.0.1:{} 3<\"$2\" 4>\"$3\"",
            flags.join(" "),
            proxy.port
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(program)
            .arg(dir.path().join("profile"))
            .arg(&input)
            .arg(&output)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromium starts");
        // Opening a FIFO waits for the other end: chromium opens both as it starts.
        let to = std::fs::OpenOptions::new().write(true).open(&input).unwrap();
        let from = std::io::BufReader::new(std::fs::File::open(&output).unwrap());
        Self { child, to, from, next_id: 0, events: Vec::new(), _dir: dir }
    }

    fn read(&mut self) -> Value {
        use std::io::BufRead as _;
        let mut message = Vec::new();
        let n = self.from.read_until(0, &mut message).unwrap();
        assert!(n > 0, "chromium closed its DevTools pipe");
        message.pop();
        serde_json::from_slice(&message).unwrap()
    }

    /// Sends a command (to a page's session, if given) and waits for its answer.
    fn call(&mut self, session: Option<&str>, method: &str, params: &Value) -> Value {
        use std::io::Write as _;
        self.next_id += 1;
        let id = self.next_id;
        let mut message = serde_json::json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = session.into();
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).unwrap();
        loop {
            let reply = self.read();
            if reply["id"] == id {
                assert!(reply["error"].is_null(), "{method} failed: {reply}");
                return reply["result"].clone();
            }
            self.events.push(reply);
        }
    }

    /// Waits for an event named `method` (at most two minutes of messages).
    fn wait_for(&mut self, method: &str) {
        let start = Instant::now();
        while !self.events.iter().any(|e| e["method"] == method) {
            assert!(start.elapsed() < Duration::from_secs(120), "no {method} from chromium");
            let event = self.read();
            self.events.push(event);
        }
    }

    /// Opens `page` in a new tab with the network watched; the tab's session.
    fn open(&mut self, page: &Path) -> String {
        let target = self.call(None, "Target.createTarget", &serde_json::json!({"url": "about:blank"}));
        let attach = serde_json::json!({"targetId": target["targetId"], "flatten": true});
        let session = self.call(None, "Target.attachToTarget", &attach)["sessionId"].as_str().unwrap().to_owned();
        for domain in ["Network.enable", "Page.enable"] {
            self.call(Some(&session), domain, &serde_json::json!({}));
        }
        let metrics = serde_json::json!({"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": false});
        self.call(Some(&session), "Emulation.setDeviceMetricsOverride", &metrics);
        self.call(Some(&session), "Page.navigate", &serde_json::json!({"url": format!("file://{}", page.display())}));
        self.wait_for("Page.loadEventFired");
        session
    }

    /// The URLs the tab requested.
    fn requested(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["method"] == "Network.requestWillBeSent")
            .filter_map(|e| e["params"]["request"]["url"].as_str().map(str::to_owned))
            .collect()
    }

    fn evaluate(&mut self, session: &str, expression: &str) -> Value {
        let params = serde_json::json!({"expression": expression, "returnByValue": true});
        self.call(Some(session), "Runtime.evaluate", &params)["result"]["value"].clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Its helpers (zygote, renderer) are in its process group: none outlives the test.
        let group = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("a pid"));
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn browser() -> Option<String> {
    let found = ["chromium", "chromium-browser"].into_iter().find_map(|name| {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        eprintln!("SKIPPED: chromium is not installed (Debian package `chromium`; .ci/run installs it)");
    }
    found.map(|p| p.display().to_string())
}

/// Where the test keeps its screenshot (the target directory's scratch space).
fn artifact(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The (request, step) of every step that finished, from `--format json` event streams.
fn finished_steps(stream: &str) -> Vec<(String, String)> {
    stream
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|e| {
            let f = &e["entry"]["step-finished"];
            Some((f["request"].as_str()?.to_owned(), f["step"].as_str()?.to_owned()))
        })
        .collect()
}

const FAILING: &str = "action:adv-late@production";

#[test]
fn the_report_opens_in_chromium_with_every_step_and_fetches_nothing() {
    let Some(browser) = browser() else { return };
    let m = Machine::new();
    // A failure in ExecuteSplit, skipped by an operator who says why; then on to the end.
    std::fs::write(m.rec().join(format!("fail-{FAILING}-ExecuteSplit")), "").unwrap();
    let broken = m.duet(&["run", &m.plan(), "--format", "json"]).env("USER", "alice").run();
    broken.code(1);
    let skip = m.duet(&["skip", FAILING, "--reason", "late trace <only>; checked by hand", "--format", "json"]);
    let skipped = skip.env("USER", "bob").run();
    // The skip carries on to where `duet run` was headed: the end.
    skipped.code(0).stdout_has("finished; its record is in");
    let steps: Vec<(String, String)> = [&broken, &skipped].iter().flat_map(|r| finished_steps(&r.stdout)).collect();
    assert!(steps.len() > 40, "a whole upgrade ran: {steps:?}");

    let page = m.path("report.html");
    m.run(&["report", "-o", &page.display().to_string()]).code(0).stderr_has("wrote the report of session");
    let proxy = Proxy::start();
    let mut browser = Browser::start(&browser, &proxy);
    let tab = browser.open(&page);
    let dom = browser.evaluate(&tab, "document.documentElement.outerHTML").as_str().unwrap().to_owned();
    assert!(dom.contains("<h1>Upgrade session"), "chromium read the report:\n{dom}");
    // What the browser laid out, not only the text: the timeline's bars have a width.
    let drawn = browser.evaluate(
        &tab,
        "[...document.querySelectorAll('#timeline rect.span')].filter(r => r.getBBox().width > 0).length",
    );
    assert!(drawn.as_u64().is_some_and(|n| n as usize >= steps.len()), "{drawn} bars drawn for {} steps", steps.len());
    for (request, step) in &steps {
        let span = format!("data-step=\"{step}\" data-request=\"{request}\"");
        assert!(dom.contains(&span), "the timeline lacks {request} {step}");
        assert!(dom.contains(&format!("<code>{step}</code>")), "the step tables lack {step}");
    }
    let mut requests: Vec<&str> = steps.iter().map(|(r, _)| r.as_str()).collect();
    requests.dedup();
    for request in &requests {
        assert!(dom.contains(&format!("class=\"dag\" data-request=\"{request}\"")), "no DAG of {request}");
    }
    assert_eq!(dom.matches("class=\"dag\"").count(), requests.len(), "one DAG per request that ran");
    assert!(dom.contains("id=\"downtime\"") && dom.contains("class=\"downtime\""), "the merge downtime is marked");
    assert!(dom.contains(&format!("class=\"failure\" data-step=\"{FAILING}\"")), "the failure is shown");
    let skipped = format!("<g class=\"node\" data-step=\"{FAILING}\"><rect class=\"skipped\"");
    assert!(dom.contains(&skipped), "the skipped step is drawn skipped in its DAG");
    assert!(dom.contains("failing as asked"), "with its stderr tail");
    assert!(dom.contains(
        "<td>bob</td><td>skip action:adv-late@production</td><td>late trace &lt;only&gt;; checked by hand</td>"
    ));
    assert!(dom.contains("<td>alice</td>"), "who ran the session");
    assert!(dom.contains("committed: the upgrade is permanent"));
    let requested = browser.requested();
    let page_url = format!("file://{}", page.display());
    assert_eq!(requested, [page_url], "the report fetched something besides itself");
    // What chromium rendered, as a person sees it, kept as an artifact.
    let shot = browser.call(
        Some(&tab),
        "Page.captureScreenshot",
        &serde_json::json!({"format": "png", "captureBeyondViewport": true}),
    );
    let png =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, shot["data"].as_str().unwrap()).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "a screenshot of a rendered page");
    std::fs::write(artifact("report.png"), png).unwrap();
}

/// The browser's network log sees what a page fetches: so its silence above means something.
#[test]
fn the_network_log_sees_a_page_that_fetches() {
    let Some(browser) = browser() else { return };
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("fetches.html");
    std::fs::write(&page, "<!DOCTYPE html><img src=\"http://report-assets.invalid/logo.png\">").unwrap();
    let proxy = Proxy::start();
    let mut browser = Browser::start(&browser, &proxy);
    browser.open(&page);
    let requested = browser.requested();
    assert!(requested.iter().any(|u| u.contains("report-assets.invalid")), "the log saw {requested:?}");
}

#[test]
fn the_report_names_what_is_missing_and_where_it_cannot_write() {
    let m = Machine::new();
    m.run(&["report"]).code(1).stderr_has("no session and no readiness check yet").stderr_has("help:");
    m.run(&["report", "--session", "../x"]).code(1).stderr_has("is not a session id");
    m.run(&["run", &m.plan(), "--through", "split"]).code(0);
    let blocked = m.path("file");
    std::fs::write(&blocked, "").unwrap();
    let into = blocked.join("report.html").display().to_string();
    m.run(&["report", "-o", &into]).code(1).stderr_has("cannot write the report to").stderr_has("help:");
    // On stdout without `-o`: the session in progress, one HTML document.
    let out = m.run(&["report"]);
    out.code(0);
    assert!(out.stdout.starts_with("<!DOCTYPE html>") && out.stdout.ends_with("</html>\n"), "{}", out.stdout);
    assert!(out.stdout.contains("in progress (state: Split | Ready)"), "{}", out.stdout);
    let addresses = out.stdout.replace("http://www.w3.org/2000/svg", "");
    assert!(!addresses.contains("://"), "no address but the SVG namespace:\n{}", out.stdout);
    assert_eq!(m.run(&["report"]).stdout, out.stdout, "the same journal gives the same report");
}
