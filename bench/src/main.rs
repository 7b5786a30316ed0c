//! `bench`: the scenarios behind `scripts/bench.sh`.
//!
//! For each size (total tags) and each listing (`/gitlab/v1`, REST details) it
//! generates an inventory, starts a fresh `gitlab-emulator` seeded with it
//! (loopback, `--latency-ms`, an announced rate budget the run fits in), and
//! runs `registry-cleanup run` under `/usr/bin/time -v`; then, on another
//! fresh emulator, `bench-serial` doing the same cleanup one request at a
//! time. Requests are counted by the emulator. It also times the offline
//! planner on 100,000 tags and reports the release binary's size.
//!
//! Timings depend on the machine; the request counts, the deletions and the
//! 429s do not, and those are what makes it fail: a tool error, fewer
//! deletions than planned, more than 1.05 requests per deleted tag with
//! `/gitlab/v1` or 2.1 through REST, any 429. `--max-rss-mib` adds a check on
//! the planner's peak memory.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{anyhow, bail, Context as _};
use chrono::{Duration, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use registry_cleanup::domain::model::Tag;
use registry_cleanup::domain::names::{Digest, RepositoryPath, TagName};
use registry_cleanup::domain::planner::plan_repository;
use registry_cleanup::domain::policy::Policy;
use registry_cleanup::output::inventory::{Inventory, InventoryRepository};

const POLICY: &str = r#"# scripts/bench.sh: keep releases, latest, the 10 newest builds and builds of the last 30 days
protect:
  - "v\\d+\\.\\d+\\.\\d+"
rules:
  - name: old builds
    delete: "build-.*"
    keep_n: 10
    older_than: 30d
"#;

const PROJECT: &str = "group/project";

const USAGE: &str = "\
usage: bench [--quick | --full] [options]

  --quick               1,000 tags only (CI smoke test)
  --full                also 100,000 tags (the tool only; add --serial-max 100000 for the serial client)
  --sizes N,N,...       total tags per scenario [1000,10000]
  --latency-ms N        emulator latency per request [5]
  --concurrency N       CLEANUP_CONCURRENCY for the tool [the tool's default]
  --sweep N,N,...       instead: the tool alone at each concurrency (choosing the default)
  --serial-max N        run the serial client up to this size [10000]
  --planner-tags N      tags for the offline planner measurement [100000; 0: skip]
  --max-rss-mib N       fail if the planner's peak RSS exceeds N MiB
  --bin DIR             where registry-cleanup is [target/release]
  --tools DIR           where gitlab-emulator and bench-serial are [target/bench-tools]
  --json FILE           also write the results as JSON";

struct Options {
    sizes: Vec<usize>,
    latency_ms: u64,
    concurrency: Option<usize>,
    sweep: Vec<usize>,
    serial_max: usize,
    planner_tags: usize,
    max_rss_mib: Option<f64>,
    bin: PathBuf,
    tools: PathBuf,
    json: Option<PathBuf>,
}

fn list(text: &str, flag: &str) -> anyhow::Result<Vec<usize>> {
    text.split(',')
        .map(|n| n.trim().replace('_', "").parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow!("{flag}: {text:?} is not a list of numbers"))
}

fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Options> {
    let mut options = Options {
        sizes: vec![1_000, 10_000],
        latency_ms: 5,
        concurrency: None,
        sweep: Vec::new(),
        serial_max: 10_000,
        planner_tags: 100_000,
        max_rss_mib: None,
        bin: PathBuf::from("target/release"),
        tools: PathBuf::from("target/bench-tools"),
        json: None,
    };
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--quick" => options.sizes = vec![1_000],
            "--full" => options.sizes = vec![1_000, 10_000, 100_000],
            "--sizes" => options.sizes = list(&value()?, &flag)?,
            "--latency-ms" => options.latency_ms = value()?.parse()?,
            "--concurrency" => options.concurrency = Some(value()?.parse()?),
            "--sweep" => options.sweep = list(&value()?, &flag)?,
            "--serial-max" => options.serial_max = value()?.replace('_', "").parse()?,
            "--planner-tags" => options.planner_tags = value()?.replace('_', "").parse()?,
            "--max-rss-mib" => options.max_rss_mib = Some(value()?.parse()?),
            "--bin" => options.bin = PathBuf::from(value()?),
            "--tools" => options.tools = PathBuf::from(value()?),
            "--json" => options.json = Some(PathBuf::from(value()?)),
            "-h" | "--help" => bail!("{USAGE}"),
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    Ok(options)
}

/// Repositories per size: one for a small project, several for larger ones.
fn repositories_for(tags: usize) -> usize {
    match tags {
        0..=2_000 => 1,
        2_001..=20_000 => 4,
        _ => 10,
    }
}

/// `repositories` repositories sharing `total` tags: per repository
/// `latest`, five releases, and builds of which the newest 2% are from the
/// last two days and the rest 60 days old or more. Without digests the
/// emulator makes a unique manifest per tag; the planner's inventory has
/// them, as `registry-cleanup inventory` writes them.
fn inventory(total: usize, repositories: usize, digests: bool) -> Inventory {
    let mut counter = 0u64;
    let mut digest = || {
        counter += 1;
        digests.then(|| Digest::parse(&format!("sha256:{counter:064x}")).expect("digest"))
    };
    let now = Utc::now();
    let per_repository = total / repositories;
    let repositories = (0..repositories)
        .map(|r| {
            let path = if r == 0 {
                PROJECT.to_string()
            } else {
                format!("{PROJECT}/service-{r}")
            };
            let mut tags = vec![Tag {
                name: tag_name("latest"),
                digest: digest(),
                created_at: Some(now - Duration::hours(1)),
                pushed_at: None,
                protected: false,
                gitlab_rule: None,
                media_type: None,
                children: Vec::new(),
                image: false,
                referrers: 0,
                size_bytes: None,
                last_pulled_at: None,
            }];
            tags.extend((0..5).map(|i| Tag {
                name: tag_name(&format!("v1.0.{i}")),
                digest: digest(),
                created_at: Some(now - Duration::days(400 - i)),
                pushed_at: None,
                protected: false,
                gitlab_rule: None,
                media_type: None,
                children: Vec::new(),
                image: false,
                referrers: 0,
                size_bytes: None,
                last_pulled_at: None,
            }));
            let builds = per_repository.saturating_sub(tags.len());
            let recent = builds / 50;
            tags.extend((0..builds).map(|i| {
                let age = if i < recent {
                    Duration::minutes(i as i64 + 1)
                } else {
                    Duration::days(60) + Duration::minutes(i as i64)
                };
                Tag {
                    name: tag_name(&format!("build-{i:06}")),
                    digest: digest(),
                    created_at: Some(now - age),
                    pushed_at: None,
                    protected: false,
                    gitlab_rule: None,
                    media_type: None,
                    children: Vec::new(),
                    image: false,
                    referrers: 0,
                    size_bytes: None,
                    last_pulled_at: None,
                }
            }));
            InventoryRepository {
                path: RepositoryPath::parse(&path).expect("benchmark repository path"),
                id: Some(r as u64 + 1),
                project_id: None,
                ledger_watched_since: None,
                ledger_error: None,
                tags,
            }
        })
        .collect();
    Inventory {
        repositories,
        ..Inventory::default()
    }
}

fn planned_deletions(policy: &Policy, inventory: &Inventory) -> usize {
    let now = Utc::now();
    inventory
        .repositories
        .iter()
        .map(|r| {
            plan_repository(policy, &r.path, &r.tags, None, now)
                .delete
                .len()
        })
        .sum()
}

/// What `/usr/bin/time -v` says.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    max_rss_kib: u64,
    cpu_seconds: f64,
}

fn read_usage(path: &Path) -> anyhow::Result<Usage> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut usage = Usage::default();
    for line in text.lines() {
        let line = line.trim();
        let number = |prefix: &str| {
            line.strip_prefix(prefix)
                .and_then(|v| v.trim().parse::<f64>().ok())
        };
        if let Some(kib) = number("Maximum resident set size (kbytes):") {
            usage.max_rss_kib = kib as u64;
        }
        if let Some(seconds) = number("User time (seconds):") {
            usage.cpu_seconds += seconds;
        }
        if let Some(seconds) = number("System time (seconds):") {
            usage.cpu_seconds += seconds;
        }
    }
    Ok(usage)
}

struct Emulator {
    child: Child,
    gitlab_url: String,
    env: Vec<(String, String)>,
}

impl Emulator {
    fn start(
        options: &Options,
        inventory: &Path,
        gitlab_v1: bool,
        budget: u64,
    ) -> anyhow::Result<Emulator> {
        let program = options.tools.join("gitlab-emulator");
        let mut command = Command::new(&program);
        command
            .args(["--latency-ms", &options.latency_ms.to_string()])
            .arg("--inventory")
            .arg(inventory)
            .args(["--rate-limit", &format!("{budget}/60")])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if !gitlab_v1 {
            command.arg("--no-gitlab-v1");
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let info: Value =
            serde_json::from_str(&line).with_context(|| format!("emulator said {line:?}"))?;
        let field = |name: &str| {
            info[name]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| anyhow!("emulator: no {name} in {line}"))
        };
        let (gitlab_url, registry_url, registry_host, job_token) = (
            field("gitlab_url")?,
            field("registry_url")?,
            field("registry_host")?,
            field("job_token")?,
        );
        let env = [
            ("CI_SERVER_URL", gitlab_url.clone()),
            ("CI_API_V4_URL", format!("{gitlab_url}/api/v4")),
            ("CI_PROJECT_ID", "1".to_string()),
            ("CI_PROJECT_PATH", PROJECT.to_string()),
            ("CI_REGISTRY", registry_host.clone()),
            ("CI_REGISTRY_IMAGE", format!("{registry_host}/{PROJECT}")),
            ("CLEANUP_REGISTRY_URL", registry_url),
            ("CI_REGISTRY_USER", "gitlab-ci-token".to_string()),
            ("CI_REGISTRY_PASSWORD", job_token.clone()),
            ("CI_JOB_TOKEN", job_token),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Ok(Emulator {
            child,
            gitlab_url,
            env,
        })
    }

    /// (all requests, 429 answers) as the emulator recorded them.
    fn counts(&self) -> anyhow::Result<(u64, u64)> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let url = format!("{}/_emulator/requests", self.gitlab_url);
        let requests: Vec<Value> = runtime
            .block_on(async { reqwest::get(&url).await?.error_for_status()?.json().await })?;
        let too_many = requests.iter().filter(|r| r["status"] == 429).count();
        Ok((requests.len() as u64, too_many as u64))
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Serialize)]
struct Measurement {
    tags: usize,
    repositories: usize,
    listing: &'static str,
    client: String,
    concurrency: Option<usize>,
    deleted: u64,
    planned: u64,
    requests: u64,
    too_many_requests: u64,
    wall_seconds: f64,
    cpu_seconds: f64,
    max_rss_mib: f64,
}

impl Measurement {
    fn per_deleted(&self) -> f64 {
        self.requests as f64 / self.deleted.max(1) as f64
    }
}

struct Scenario<'a> {
    options: &'a Options,
    dir: &'a Path,
    tags: usize,
    repositories: usize,
    inventory: PathBuf,
    planned: u64,
    gitlab_v1: bool,
}

impl Scenario<'_> {
    fn listing(&self) -> &'static str {
        if self.gitlab_v1 {
            "gitlab/v1"
        } else {
            "REST details"
        }
    }

    /// A budget the run fits in: GitLab-origin requests are about one per
    /// tag through REST, a handful per repository with /gitlab/v1.
    fn budget(&self) -> u64 {
        let expected = if self.gitlab_v1 {
            4 * self.repositories + 10
        } else {
            self.tags + self.tags / 50 + 4 * self.repositories + 10
        };
        (expected as u64) * 3 / 2
    }

    fn tool(&self, concurrency: Option<usize>) -> anyhow::Result<Measurement> {
        let emulator =
            Emulator::start(self.options, &self.inventory, self.gitlab_v1, self.budget())?;
        let report = self.dir.join("report.json");
        let time = self.dir.join("time-tool.txt");
        let log = std::fs::File::create(self.dir.join("tool.log"))?;
        let mut command = Command::new("/usr/bin/time");
        command
            .arg("-v")
            .arg("-o")
            .arg(&time)
            .arg(self.options.bin.join("registry-cleanup"))
            .arg("run")
            .arg("--policy")
            .arg(self.dir.join("policy.yml"))
            .arg("--report")
            .arg(&report)
            .env_clear()
            .envs(emulator.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(concurrency) = concurrency {
            command.env("CLEANUP_CONCURRENCY", concurrency.to_string());
        }
        let started = Instant::now();
        let status = command
            .status()
            .context("running registry-cleanup under /usr/bin/time")?;
        let wall = started.elapsed().as_secs_f64();
        if !status.success() {
            bail!(
                "registry-cleanup run failed ({status}) on {} tags, {}: see {}",
                self.tags,
                self.listing(),
                self.dir.join("tool.log").display()
            );
        }
        let report: Value = serde_json::from_str(&std::fs::read_to_string(&report)?)?;
        let deleted = report["totals"]["deleted"].as_u64().unwrap_or(0);
        let (requests, too_many) = emulator.counts()?;
        let usage = read_usage(&time)?;
        Ok(Measurement {
            tags: self.tags,
            repositories: self.repositories,
            listing: self.listing(),
            client: "registry-cleanup".into(),
            concurrency,
            deleted,
            planned: self.planned,
            requests,
            too_many_requests: too_many,
            wall_seconds: wall,
            cpu_seconds: usage.cpu_seconds,
            max_rss_mib: usage.max_rss_kib as f64 / 1024.0,
        })
    }

    fn serial(&self) -> anyhow::Result<Measurement> {
        let emulator =
            Emulator::start(self.options, &self.inventory, self.gitlab_v1, self.budget())?;
        let time = self.dir.join("time-serial.txt");
        let started = Instant::now();
        let output = Command::new("/usr/bin/time")
            .arg("-v")
            .arg("-o")
            .arg(&time)
            .arg(self.options.tools.join("bench-serial"))
            .arg("--policy")
            .arg(self.dir.join("policy.yml"))
            .env_clear()
            .envs(emulator.env.iter().cloned())
            .stderr(Stdio::inherit())
            .output()
            .context("running bench-serial under /usr/bin/time")?;
        let wall = started.elapsed().as_secs_f64();
        if !output.status.success() {
            bail!(
                "bench-serial failed ({}) on {} tags, {}",
                output.status,
                self.tags,
                self.listing()
            );
        }
        let line: Value = serde_json::from_slice(&output.stdout)?;
        let (requests, too_many) = emulator.counts()?;
        let usage = read_usage(&time)?;
        Ok(Measurement {
            tags: self.tags,
            repositories: self.repositories,
            listing: self.listing(),
            client: "serial".into(),
            concurrency: Some(1),
            deleted: line["deleted"].as_u64().unwrap_or(0),
            planned: self.planned,
            requests,
            too_many_requests: too_many,
            wall_seconds: wall,
            cpu_seconds: usage.cpu_seconds,
            max_rss_mib: usage.max_rss_kib as f64 / 1024.0,
        })
    }
}

#[derive(Debug, Serialize)]
struct Planner {
    tags: usize,
    wall_seconds: f64,
    max_rss_mib: f64,
    inventory_mib: f64,
}

fn planner(options: &Options, dir: &Path, tags: usize) -> anyhow::Result<Planner> {
    let file = dir.join(format!("inventory-plan-{tags}.json"));
    let json = serde_json::to_string(&inventory(tags, 1, true))?;
    std::fs::write(&file, &json)?;
    let time = dir.join("time-plan.txt");
    let started = Instant::now();
    let status = Command::new("/usr/bin/time")
        .arg("-v")
        .arg("-o")
        .arg(&time)
        .arg(options.bin.join("registry-cleanup"))
        .arg("plan")
        .arg("--inventory")
        .arg(&file)
        .arg("--policy")
        .arg(dir.join("policy.yml"))
        .arg("--report")
        .arg(dir.join("plan-report.json"))
        .env_clear()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    let wall = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("registry-cleanup plan failed ({status})");
    }
    let usage = read_usage(&time)?;
    Ok(Planner {
        tags,
        wall_seconds: wall,
        max_rss_mib: usage.max_rss_kib as f64 / 1024.0,
        inventory_mib: json.len() as f64 / (1024.0 * 1024.0),
    })
}

fn target(listing: &str) -> f64 {
    if listing == "gitlab/v1" {
        1.05
    } else {
        2.1
    }
}

fn print_table(measurements: &[Measurement]) {
    println!("| tags | repos | listing | client | in flight | wall s | cpu s | requests | req/deleted | 429s | peak RSS MiB | speed-up |");
    println!("|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for m in measurements {
        let serial = measurements
            .iter()
            .find(|s| s.client == "serial" && s.tags == m.tags && s.listing == m.listing);
        let speedup = match serial {
            Some(s) if m.client != "serial" => format!("{:.1}×", s.wall_seconds / m.wall_seconds),
            _ => "".into(),
        };
        let in_flight = match (m.client.as_str(), m.concurrency) {
            ("serial", _) => "1".to_string(),
            (_, Some(c)) => c.to_string(),
            (_, None) => format!(
                "{} (default)",
                registry_cleanup::config::settings::DEFAULT_CONCURRENCY
            ),
        };
        println!(
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {} | {:.3} | {} | {:.1} | {} |",
            m.tags,
            m.repositories,
            m.listing,
            m.client,
            in_flight,
            m.wall_seconds,
            m.cpu_seconds,
            m.requests,
            m.per_deleted(),
            m.too_many_requests,
            m.max_rss_mib,
            speedup
        );
    }
}

fn run(options: Options) -> anyhow::Result<Vec<String>> {
    let dir = std::env::temp_dir().join(format!("registry-cleanup-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("policy.yml"), POLICY)?;
    let policy = Policy::parse(POLICY, "bench policy").map_err(|err| anyhow!("{err}"))?;
    let mut failures = Vec::new();
    let mut measurements = Vec::new();
    println!(
        "registry-cleanup benchmark: emulator latency {} ms, {} cores, results in {}",
        options.latency_ms,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        dir.display()
    );
    for &tags in &options.sizes {
        let repositories = repositories_for(tags);
        let generated = inventory(tags, repositories, false);
        let planned = planned_deletions(&policy, &generated) as u64;
        let file = dir.join(format!("inventory-{tags}.json"));
        std::fs::write(&file, serde_json::to_string(&generated)?)?;
        drop(generated);
        for gitlab_v1 in [true, false] {
            let scenario = Scenario {
                options: &options,
                dir: &dir,
                tags,
                repositories,
                inventory: file.clone(),
                planned,
                gitlab_v1,
            };
            let runs: Vec<Option<usize>> = if options.sweep.is_empty() {
                vec![options.concurrency]
            } else {
                options.sweep.iter().copied().map(Some).collect()
            };
            for concurrency in runs {
                let in_flight =
                    concurrency.map_or_else(|| "default".to_string(), |n| n.to_string());
                eprintln!(
                    "… {tags} tags, {}, registry-cleanup (in flight: {in_flight})",
                    scenario.listing()
                );
                let m = scenario.tool(concurrency)?;
                if m.deleted != planned {
                    failures.push(format!(
                        "{tags} tags, {}: deleted {} of {planned} planned",
                        m.listing, m.deleted
                    ));
                }
                if m.per_deleted() > target(m.listing) {
                    failures.push(format!(
                        "{tags} tags, {}: {:.3} requests per deleted tag, over {}",
                        m.listing,
                        m.per_deleted(),
                        target(m.listing)
                    ));
                }
                if m.too_many_requests > 0 {
                    failures.push(format!(
                        "{tags} tags, {}: {} answers 429 within the announced budget",
                        m.listing, m.too_many_requests
                    ));
                }
                measurements.push(m);
            }
            if options.sweep.is_empty() && tags <= options.serial_max {
                eprintln!("… {tags} tags, {}, serial client", scenario.listing());
                let m = scenario.serial()?;
                if m.deleted != planned {
                    failures.push(format!(
                        "{tags} tags, {}: the serial client deleted {} of {planned}",
                        m.listing, m.deleted
                    ));
                }
                measurements.push(m);
            }
        }
    }
    println!();
    print_table(&measurements);

    let planner = if options.planner_tags > 0 {
        let p = planner(&options, &dir, options.planner_tags)?;
        println!(
            "\noffline planner: {} tags ({:.1} MiB inventory): {:.2} s, peak RSS {:.1} MiB",
            p.tags, p.inventory_mib, p.wall_seconds, p.max_rss_mib
        );
        if let Some(limit) = options.max_rss_mib {
            if p.max_rss_mib > limit {
                failures.push(format!(
                    "the planner's peak RSS {:.1} MiB is over {limit} MiB",
                    p.max_rss_mib
                ));
            }
        }
        Some(p)
    } else {
        None
    };
    let binary = options.bin.join("registry-cleanup");
    let size = std::fs::metadata(&binary)
        .with_context(|| format!("{}", binary.display()))?
        .len();
    println!(
        "release binary: {:.2} MiB ({size} bytes)",
        size as f64 / (1024.0 * 1024.0)
    );

    if let Some(path) = &options.json {
        let results = json!({
            "latency_ms": options.latency_ms,
            "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "measurements": measurements,
            "planner": planner,
            "binary_bytes": size,
        });
        let mut file = std::fs::File::create(path)?;
        writeln!(file, "{}", serde_json::to_string_pretty(&results)?)?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(failures)
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    match run(options) {
        Ok(failures) if failures.is_empty() => ExitCode::SUCCESS,
        Ok(failures) => {
            for failure in failures {
                eprintln!("bench: FAILED: {failure}");
            }
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("bench: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn tag_name(name: &str) -> TagName {
    TagName::parse(name).expect("benchmark tag name")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_project_deletes_most_builds() {
        let policy = Policy::parse(POLICY, "bench policy").expect("policy");
        let inventory = inventory(1_000, 1, false);
        assert_eq!(inventory.repositories[0].tags.len(), 1_000);
        // 994 builds, of which the 19 newest are recent (keep_n keeps 10 of
        // them, older_than the rest): 975 old builds go.
        assert_eq!(planned_deletions(&policy, &inventory), 994 - 19);
    }
}
