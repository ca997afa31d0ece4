//! Starts `chromedriver` on a free loopback port and cleans up after it (a `Drop` guard, so it
//! also runs when a check fails or panics): kills chromedriver, any Chromium still running with
//! this test's private profile directory, and removes that directory.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";

pub struct ChromeDriver {
    child: Child,
    port: u16,
    /// Fresh `--user-data-dir` for the browser of this run.
    pub profile_dir: PathBuf,
    pub log_path: PathBuf,
}

impl ChromeDriver {
    /// Starts chromedriver and waits (at most `ready_within`) until it accepts connections.
    /// `work_dir` receives the log and the browser profile.
    pub fn start(work_dir: &Path, ready_within: Duration) -> Result<Self, String> {
        std::fs::create_dir_all(work_dir).map_err(|e| format!("create {}: {e}", work_dir.display()))?;
        let unique = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        );
        let profile_dir = work_dir.join(format!("chrome-profile-{unique}"));
        std::fs::create_dir_all(&profile_dir).map_err(|e| format!("create {}: {e}", profile_dir.display()))?;
        let log_path = work_dir.join("chromedriver.log");
        let log = File::create(&log_path).map_err(|e| format!("create {}: {e}", log_path.display()))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;

        let port = free_port().map_err(|e| format!("find a free port: {e}"))?;
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("start {CHROMEDRIVER}: {e}"))?;
        let mut driver = Self { child, port, profile_dir, log_path };

        let deadline = Instant::now() + ready_within;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(driver);
            }
            if let Ok(Some(status)) = driver.child.try_wait() {
                return Err(format!("chromedriver exited early ({status}); log:\n{}", driver.log_tail()));
            }
            if Instant::now() > deadline {
                return Err(format!("chromedriver did not listen on port {port} within {ready_within:?}; log:\n{}", driver.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The last lines of chromedriver's output, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // If the WebDriver session was not closed (a failed or panicking check), the browser
        // outlives chromedriver. Find exactly the processes started with our profile directory.
        let marker = self.profile_dir.to_string_lossy().into_owned();
        for pid in pids_with_arg_containing(&marker) {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).stderr(Stdio::null()).status();
        }
        // Chromium may still be writing into the profile for a moment after it is killed.
        for _ in 0..10 {
            if std::fs::remove_dir_all(&self.profile_dir).is_ok() || !self.profile_dir.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// Processes (Linux `/proc`) one of whose command-line arguments contains `needle`.
fn pids_with_arg_containing(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|raw| raw.split(|&b| b == 0).any(|arg| String::from_utf8_lossy(arg).contains(needle)))
                .unwrap_or(false)
        })
        .collect()
}
