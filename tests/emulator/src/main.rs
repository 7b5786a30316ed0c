//! `gitlab-emulator`: the emulator as a process, for shell scripts.
//!
//! Prints one JSON line describing where it listens, then serves until SIGTERM or
//! SIGINT. Run with `--help` for the flags.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use gitlab_emulator::{Config, Emulator, Listen, RateLimit};

const USAGE: &str = "\
usage: gitlab-emulator [options]

  --gitlab-addr ADDR      GitLab origin (REST, /jwt/auth) listen address [127.0.0.1:0]
  --registry-addr ADDR    registry origin listen address [127.0.0.1:0]
  --no-registry           serve only the GitLab origin (token realm for a real registry)
  --registry-host HOST    registry host:port GitLab reports (default: our registry address,
                          or the upstream registry's)
  --upstream-registry URL GitLab in front of a third-party registry at URL (e.g. Distribution
                          2.8 whose token realm is this emulator): no registry of our own,
                          no keyset pagination; the project's REST repositories (those
                          /jwt/auth issued a push token for), tag list, tag details and
                          single-tag delete (GitLab's dummy-manifest trick) use that registry
  --inventory FILE        seed repositories and tags (inventory JSON, full paths;
                          repeatable): digests, dates, sizes, media types, an
                          index's children; repositories of another project_id
                          make a project of the group; refs make branches and
                          open merge requests
  --inventory-now RFC3339 the instant the inventories' dates are relative to: their
                          tags are served as old, whenever asked, as they were then
  --project-path PATH     project path [group/project; with --inventory: the first
                          inventory's, the common path of its repositories]
  --project-id N          project id [1]
  --group-project ID:PATH another project of the group (repeatable): listed by
                          GET /groups/:id/registry/repositories, reachable with the access token
  --admin                 the access token is an administrator's (registry:catalog:*)
  --signing-key FILE      RSA private key PEM (PKCS#8 or PKCS#1) for JWTs
  --issuer NAME           JWT issuer [gitlab-issuer]
  --job-token T           CI job token
  --access-token T        personal access token
  --no-tag-delete         registry answers DIGEST_INVALID to tag deletes (Distribution 2.8)
  --no-keyset             REST tag list answers 405 to keyset pagination
  --no-gitlab-v1          registry has no /gitlab/v1 tag list
  --no-grant-delete       /jwt/auth never grants delete
  --grant-push            /jwt/auth grants push
  --latency-ms N          delay every request by N ms
  --rate-limit N/SECONDS  GitLab origin: announce a budget of N requests per window
                          in RateLimit-* headers, answer 429 beyond it

Control endpoints on the GitLab origin: GET /_emulator/state, GET /_emulator/requests,
GET /_emulator/summary (counts), POST /_emulator/reset-requests,
POST /_emulator/garbage-collect[?untagged=true] (the registry's garbage collector).";

struct Options {
    config: Config,
    listen: Listen,
    /// The files and their text.
    inventories: Vec<(String, String)>,
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut config = Config::default();
    let mut listen = Listen::default();
    let mut inventories = Vec::new();
    let mut project_path = None;
    let mut upstream_host = None;
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut value = |flag: &str| args.next().ok_or_else(|| format!("{flag} needs a value"));
        let addr = |text: String, flag: &str| -> Result<SocketAddr, String> {
            text.parse()
                .map_err(|_| format!("{flag}: {text:?} is not an address like 127.0.0.1:18080"))
        };
        match flag.as_str() {
            "--gitlab-addr" => listen.gitlab = addr(value(&flag)?, &flag)?,
            "--registry-addr" => listen.registry = Some(addr(value(&flag)?, &flag)?),
            "--no-registry" => listen.registry = None,
            "--registry-host" => listen.registry_host = Some(value(&flag)?),
            "--upstream-registry" => {
                let url = value(&flag)?;
                let host = url
                    .strip_prefix("http://")
                    .or_else(|| url.strip_prefix("https://"))
                    .map(|rest| rest.trim_end_matches('/'))
                    .filter(|host| !host.is_empty() && !host.contains('/'))
                    .ok_or_else(|| {
                        format!("--upstream-registry: {url:?} is not like http://127.0.0.1:5000")
                    })?;
                upstream_host = Some(host.to_string());
                config.upstream_registry = Some(url.trim_end_matches('/').to_string());
                // Without GitLab's own registry there is no metadata database.
                config.keyset = false;
                config.gitlab_v1 = false;
                config.tag_delete = false;
            }
            "--inventory" => inventories.push(value(&flag)?),
            "--inventory-now" => {
                let text = value(&flag)?;
                config.inventory_now = Some(
                    chrono::DateTime::parse_from_rfc3339(&text)
                        .map_err(|err| format!("--inventory-now: {text:?}: {err}"))?
                        .with_timezone(&chrono::Utc),
                );
            }
            "--project-path" => project_path = Some(value(&flag)?),
            "--project-id" => {
                let text = value(&flag)?;
                config.project_id = text
                    .parse()
                    .map_err(|_| format!("--project-id: {text:?} is not a number"))?;
            }
            "--signing-key" => {
                let file = value(&flag)?;
                config.signing_key_pem = Some(
                    std::fs::read_to_string(&file)
                        .map_err(|err| format!("--signing-key: cannot read {file}: {err}"))?,
                );
            }
            "--issuer" => config.issuer = value(&flag)?,
            "--job-token" => config.job_token = value(&flag)?,
            "--access-token" => config.access_token = value(&flag)?,
            "--group-project" => {
                let text = value(&flag)?;
                let project = text
                    .split_once(':')
                    .and_then(|(id, path)| Some((id.parse::<u64>().ok()?, path.to_string())))
                    .filter(|(_, path)| !path.is_empty())
                    .ok_or_else(|| {
                        format!("--group-project: {text:?} is not like 2:group/other")
                    })?;
                config.group_projects.push(project);
            }
            "--admin" => config.admin = true,
            "--no-tag-delete" => config.tag_delete = false,
            "--no-keyset" => config.keyset = false,
            "--no-gitlab-v1" => config.gitlab_v1 = false,
            "--no-grant-delete" => config.grant_delete = false,
            "--grant-push" => config.grant_push = true,
            "--latency-ms" => {
                let text = value(&flag)?;
                let ms: u64 = text
                    .parse()
                    .map_err(|_| format!("--latency-ms: {text:?} is not a number"))?;
                config.latency = Duration::from_millis(ms);
            }
            "--rate-limit" => {
                let text = value(&flag)?;
                let parsed = text
                    .split_once('/')
                    .and_then(|(limit, seconds)| Some((limit.parse().ok()?, seconds.parse().ok()?)))
                    .filter(|&(limit, seconds): &(u32, u64)| limit > 0 && seconds > 0);
                let (limit, seconds) =
                    parsed.ok_or_else(|| format!("--rate-limit: {text:?} is not like 2000/60"))?;
                config.rate_limit = Some(RateLimit {
                    limit,
                    window: Duration::from_secs(seconds),
                });
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if let Some(host) = upstream_host {
        listen.registry = None;
        listen.registry_host.get_or_insert(host);
    }
    let inventories = inventories
        .into_iter()
        .map(|file| {
            let json = std::fs::read_to_string(&file)
                .map_err(|err| format!("--inventory: cannot read {file}: {err}"))?;
            Ok((file, json))
        })
        .collect::<Result<Vec<_>, String>>()?;
    config.project_path = match (project_path, inventories.first()) {
        (Some(path), _) => path,
        (None, Some((file, json))) => gitlab_emulator::project_path_of_inventory(json)
            .map_err(|err| format!("--inventory {file}: {err}"))?,
        (None, None) => config.project_path,
    };
    Ok(Options {
        config,
        listen,
        inventories,
    })
}

fn run(options: Options) -> Result<(), String> {
    let serves_registry = options.listen.registry.is_some();
    let emulator = Emulator::start_on(options.config, options.listen)?;
    for (file, json) in &options.inventories {
        emulator
            .try_load_inventory_json(json)
            .map_err(|err| format!("--inventory {file}: {err}"))?;
    }
    let config = emulator.config();
    let line = serde_json::json!({
        "gitlab_url": emulator.gitlab_url(),
        "registry_url": serves_registry.then(|| emulator.registry_url()),
        "registry_host": emulator.registry_host(),
        "job_token": config.job_token,
        "access_token": config.access_token,
        "project_path": config.project_path,
        "project_id": config.project_id,
        "kid": emulator.kid(),
    });
    // Watch for the signals before announcing the addresses: a caller that reads the
    // line and sends SIGTERM at once must get a clean exit, not the default action.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start tokio: {err}"))?;
    let (mut terminate, mut interrupt) = {
        let _context = runtime.enter();
        let watch = |kind: tokio::signal::unix::SignalKind, name: &str| {
            tokio::signal::unix::signal(kind).map_err(|err| format!("cannot watch {name}: {err}"))
        };
        (
            watch(tokio::signal::unix::SignalKind::terminate(), "SIGTERM")?,
            watch(tokio::signal::unix::SignalKind::interrupt(), "SIGINT")?,
        )
    };

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(|err| format!("cannot write to stdout: {err}"))?;
    drop(stdout);

    runtime.block_on(async {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    });
    drop(emulator);
    Ok(())
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("gitlab-emulator: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("gitlab-emulator: {message}");
            ExitCode::FAILURE
        }
    }
}
