//! What each `qmig` subcommand does, as library calls the tests can make too.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use qmig_codec::{Context, Dialect, Version};

use crate::events::Event;
use crate::inspect;
use crate::outcome;
use crate::profile::SideProfile;
use crate::replay::{self, Loaded};
use crate::report::Report;

/// Output options shared by replay and check.
#[derive(Debug, Clone, Default, Args)]
pub struct OutputArgs {
    /// JSON report.
    #[arg(long)]
    pub json: bool,
    /// Also write a JUnit XML report.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Baseline: exit 1 only when a verdict differs from this earlier `--json` report.
    #[arg(long)]
    pub expected: Option<PathBuf>,
    /// A third-party VMM profile (JSON: dialect, claimed caps, disabled rules with reasons).
    #[arg(long)]
    pub profile: Option<PathBuf>,
}

/// The two sides' settings, from flags.
#[derive(Debug, Clone, Default, Args)]
pub struct SideArgs {
    /// Source QEMU version (e.g. 7.2, 10.0).
    #[arg(long, default_value = "10.0")]
    pub src_version: String,
    /// Source machine type.
    #[arg(long)]
    pub src_machine: Option<String>,
    /// Source capabilities (QAPI names, comma separated).
    #[arg(long, value_delimiter = ',')]
    pub src_caps: Vec<String>,
    /// Destination QEMU version.
    #[arg(long, default_value = "10.0")]
    pub dst_version: String,
    /// Destination machine type.
    #[arg(long)]
    pub dst_machine: Option<String>,
    /// Destination capabilities.
    #[arg(long, value_delimiter = ',')]
    pub dst_caps: Vec<String>,
    /// Protocol dialect of both sides (merged, precopy-initial-data, fixed-ram, fixed-ram-borisov, virtio-iterative).
    #[arg(long, default_value = "merged")]
    pub dialect: String,
    /// The source's dialect, when it differs from the destination's (overrides --dialect).
    #[arg(long)]
    pub src_dialect: Option<String>,
    /// The destination's dialect (overrides --dialect).
    #[arg(long)]
    pub dst_dialect: Option<String>,
    /// A source migration parameter or property, NAME=VALUE (repeatable; VALUE is JSON or a
    /// string), e.g. multifd-channels=4, multifd-flush-after-each-section=on.
    #[arg(long = "src-param", value_name = "NAME=VALUE")]
    pub src_params: Vec<String>,
    /// A destination migration parameter or property, NAME=VALUE (repeatable).
    #[arg(long = "dst-param", value_name = "NAME=VALUE")]
    pub dst_params: Vec<String>,
}

impl SideArgs {
    fn side(v: &str, machine: &Option<String>, caps: &[String], dialect: &str, params: &[String]) -> Result<SideProfile, String> {
        let version: Version = v.parse()?;
        let dialect: Dialect = dialect.parse()?;
        let mut map = serde_json::Map::new();
        for p in params {
            let (k, val) = p.split_once('=').ok_or_else(|| format!("parameter '{p}' is not NAME=VALUE"))?;
            let val = serde_json::from_str(val).unwrap_or_else(|_| serde_json::Value::String(val.to_string()));
            map.insert(k.to_string(), val);
        }
        Ok(SideProfile {
            version,
            dialect,
            machine: machine.clone(),
            caps: caps.iter().filter(|c| !c.is_empty()).cloned().collect(),
            params: map,
            ..SideProfile::default()
        })
    }

    /// Build both profiles.
    pub fn profiles(&self) -> Result<(SideProfile, SideProfile), String> {
        let sd = self.src_dialect.as_deref().unwrap_or(&self.dialect);
        let dd = self.dst_dialect.as_deref().unwrap_or(&self.dialect);
        Ok((
            Self::side(&self.src_version, &self.src_machine, &self.src_caps, sd, &self.src_params)?,
            Self::side(&self.dst_version, &self.dst_machine, &self.dst_caps, dd, &self.dst_params)?,
        ))
    }
}

/// `--dump` kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpKind {
    /// vmdesc JSON.
    Desc,
    /// Decoded device state.
    State,
}

/// Options of `qmig inspect`.
#[derive(Debug, Clone, Default)]
pub struct InspectOpts {
    /// JSON dump.
    pub json: bool,
    /// Every page.
    pub pages: bool,
    /// analyze-migration views.
    pub dump: Option<DumpKind>,
    /// Include memory.
    pub memory: bool,
    /// Extract directory.
    pub extract: Option<PathBuf>,
    /// Show progress on stderr.
    pub progress: bool,
}

fn ctx_for(l: &Loaded) -> Context {
    let src = replay::side_from_meta(l.meta.as_ref().and_then(|m| m.get("src"))).unwrap_or_default();
    let mut ctx = src.codec_context();
    // Capabilities that change the layout are announced by the stream itself where they matter.
    ctx.caps.retain(|c| c != "mapped-ram" && c != "x-ignore-shared");
    ctx
}

/// `qmig inspect`.
pub fn inspect(path: &Path, o: InspectOpts) -> Result<i32, String> {
    // A plain file is mapped, not read into memory.
    let mapped = if path.is_file() { Some(replay::map_file(path).map_err(|e| e.to_string())?) } else { None };
    let l = match &mapped {
        Some(_) => replay::Loaded {
            name: path.display().to_string(),
            meta: None,
            transport: crate::outcome::Transport::File,
            channels: Vec::new(),
        },
        None => replay::load(path).map_err(|e| e.to_string())?,
    };
    let ctx = ctx_for(&l);
    let main_bytes: &[u8] = match &mapped {
        Some(m) => m,
        None => &l.channels[0].bytes,
    };
    struct MainRef<'b> {
        bytes: &'b [u8],
    }
    let main = MainRef { bytes: main_bytes };
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    match o.dump {
        Some(DumpKind::Desc) => {
            let d = qmig_codec::MainDecoder::for_file(ctx, main.bytes);
            let v = d.vmdesc().ok_or("no vmdesc trailer in this stream")?;
            writeln!(w, "{}", serde_json::to_string_pretty(&v.json).unwrap_or_default()).map_err(|e| e.to_string())?;
            return Ok(0);
        }
        Some(DumpKind::State) => {
            let mut s = inspect::dump_state(main.bytes, ctx.clone())?;
            if o.memory {
                s["ram"] = memory_json(main.bytes, ctx);
            }
            writeln!(w, "{}", serde_json::to_string_pretty(&s).unwrap_or_default()).map_err(|e| e.to_string())?;
            return Ok(0);
        }
        None => {}
    }
    if let Some(dir) = &o.extract {
        let written = inspect::extract(main.bytes, ctx, dir)?;
        for (name, n) in written {
            writeln!(w, "{name}: {n} pages").map_err(|e| e.to_string())?;
        }
        return Ok(0);
    }
    let total = main.bytes.len() as u64;
    let progress = o.progress && total > (256 << 20);
    let dump = inspect::dump_main(main.bytes, ctx, o.pages, |p| {
        if progress {
            eprint!("\r{:>5.1}% of {} MiB", p as f64 * 100.0 / total.max(1) as f64, total >> 20);
        }
    });
    if progress {
        eprintln!();
    }
    let mut others: Vec<(String, Vec<Event>)> = Vec::new();
    let mut bad_other = false;
    if l.channels.len() > 1 {
        let src = replay::side_from_meta(l.meta.as_ref().and_then(|m| m.get("src"))).unwrap_or_default();
        let (evs, _) = replay::decode_channels(&l, &src);
        for ch in l.channels.iter().skip(1) {
            let name = ch.channel.clone().map(|c| c.to_string()).unwrap_or_default();
            let mine: Vec<Event> = evs.iter().filter(|e| Some(&e.channel) == ch.channel.as_ref()).cloned().collect();
            bad_other |= mine.iter().any(|e| matches!(e.kind, crate::events::EventKind::Error(_)));
            others.push((name, mine));
        }
    }
    if o.json {
        let v = inspect::json_dump(&l.name, &dump, &others);
        writeln!(w, "{}", serde_json::to_string_pretty(&v).unwrap_or_default()).map_err(|e| e.to_string())?;
    } else {
        writeln!(w, "== {} [main] {} bytes", l.name, total).map_err(|e| e.to_string())?;
        for line in &dump.lines {
            writeln!(w, "{line}").map_err(|e| e.to_string())?;
        }
        for (name, evs) in &others {
            writeln!(w, "== [{name}] {} events", evs.len()).map_err(|e| e.to_string())?;
            for e in evs {
                writeln!(w, "{}", inspect::event_line(e)).map_err(|e| e.to_string())?;
            }
        }
        if !dump.blocks.is_empty() {
            writeln!(w, "== RAM pages per block").map_err(|e| e.to_string())?;
            for (b, (n, z, x)) in &dump.blocks {
                writeln!(w, "  {b:<32} {n:>8} normal {z:>8} zero{}", if *x > 0 { format!(" {x:>8} other") } else { String::new() })
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    w.flush().map_err(|e| e.to_string())?;
    let ok = dump.error.is_none() && dump.consumed == dump.total && !bad_other;
    if !ok {
        if let Some(e) = &dump.error {
            eprintln!("qmig: {e}");
        } else if dump.consumed != dump.total {
            eprintln!("qmig: {} of {} bytes accounted for", dump.consumed, dump.total);
        }
    }
    Ok(if ok { 0 } else { 1 })
}

fn memory_json(bytes: &[u8], ctx: Context) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    let mut dec = qmig_codec::MainDecoder::for_file(ctx, bytes);
    let mut names = Vec::new();
    let _ = qmig_codec::decode_all(&mut dec, bytes, |d| match &d.record {
        qmig_codec::Record::Ram(qmig_codec::ram::RamRecord::Block(b)) => names.push(qmig_codec::lossy(b.idstr)),
        qmig_codec::Record::Ram(qmig_codec::ram::RamRecord::Page { block_index: Some(i), offset, data, .. }) => {
            let n = names.get(*i as usize).cloned().unwrap_or_default();
            m.insert(format!("{n} (0x{offset:016x})"), serde_json::Value::String(hex::encode(data)));
        }
        _ => {}
    });
    serde_json::Value::Object(m)
}

/// A third-party profile file.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct VmmProfile {
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Dialect.
    #[serde(default)]
    pub dialect: Option<String>,
    /// Claimed capabilities.
    #[serde(default)]
    pub caps: Option<Vec<String>>,
    /// Version the VMM behaves like.
    #[serde(default)]
    pub version: Option<String>,
    /// Disabled rules, each with a mandatory reason.
    #[serde(default)]
    pub disabled_rules: Vec<DisabledRule>,
}

/// One disabled rule.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct DisabledRule {
    /// Rule ID.
    pub rule: String,
    /// Why (mandatory).
    pub reason: String,
}

fn apply_profile(src: &mut SideProfile, p: &Option<PathBuf>) -> Result<Option<VmmProfile>, String> {
    let Some(p) = p else { return Ok(None) };
    let v: VmmProfile = serde_json::from_slice(&std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?)
        .map_err(|e| format!("{}: {e}", p.display()))?;
    for d in &v.disabled_rules {
        if d.reason.trim().is_empty() {
            return Err(format!("profile disables {} without a reason", d.rule));
        }
        if crate::rules::rule(&d.rule).is_none() {
            return Err(format!("profile disables unknown rule {}", d.rule));
        }
    }
    if let Some(d) = &v.dialect {
        src.dialect = d.parse()?;
    }
    if let Some(c) = &v.caps {
        src.caps = c.clone();
    }
    if let Some(ver) = &v.version {
        src.version = ver.parse()?;
    }
    src.label = v.name.clone();
    Ok(Some(v))
}

fn finish(mut reports: Vec<Report>, out: &OutputArgs, prof: Option<VmmProfile>) -> Result<i32, String> {
    if let Some(p) = &prof {
        for r in &mut reports {
            r.findings.retain(|f| !p.disabled_rules.iter().any(|d| d.rule == f.rule));
            r.disabled = p.disabled_rules.iter().map(|d| (d.rule.clone(), d.reason.clone())).collect();
            let observed_dst = r.dst.verdict != crate::report::Verdict::Informational;
            r.src = crate::report::side_report(&r.findings, crate::rules::Side::Src, true);
            r.dst = crate::report::side_report(&r.findings, crate::rules::Side::Dst, observed_dst);
        }
    }
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    for r in &reports {
        if out.json {
            writeln!(w, "{}", serde_json::to_string_pretty(r).unwrap_or_default()).map_err(|e| e.to_string())?;
        } else {
            write!(w, "{}", r.text()).map_err(|e| e.to_string())?;
        }
    }
    if let Some(j) = &out.junit {
        std::fs::write(j, Report::junit(&reports)).map_err(|e| format!("{}: {e}", j.display()))?;
    }
    if let Some(exp) = &out.expected {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(exp).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        let r = &reports[0];
        let same = |k: &str, got: &crate::report::SideReport| {
            v.get(k).and_then(|s| s.get("verdict")).and_then(|x| x.as_str())
                == Some(&serde_json::to_value(got.verdict).unwrap_or_default().as_str().unwrap_or_default().to_string()[..])
        };
        let changed =
            !same("src", &r.src) || !same("dst", &r.dst) || v.get("outcome") != Some(&serde_json::to_value(&r.outcome).unwrap_or_default());
        if changed {
            eprintln!("qmig: verdict changed from the baseline {}", exp.display());
        }
        return Ok(if changed { 1 } else { 0 });
    }
    Ok(reports.iter().map(|r| r.exit_code()).max().unwrap_or(0))
}

/// `qmig replay`.
pub fn replay(case: &Path, out: &OutputArgs) -> Result<i32, String> {
    let l = replay::load(case).map_err(|e| e.to_string())?;
    if l.meta.is_none() {
        return Err(format!("{} is not a case directory (use `qmig check` for a bare stream)", case.display()));
    }
    let (mut src, dst) = replay::sides(l.meta.as_ref());
    let prof = apply_profile(&mut src, &out.profile)?;
    let r = replay::run(&l, src, dst);
    finish(vec![r], out, prof)
}

/// `qmig check`: streams the input (mapped file or chunked stdin), never holding it whole.
pub fn check(path: &Path, sides: &SideArgs, out: &OutputArgs) -> Result<i32, String> {
    let (mut src, dst) = sides.profiles()?;
    let prof = apply_profile(&mut src, &out.profile)?;
    if path.is_dir() {
        let l = replay::load(path).map_err(|e| e.to_string())?;
        return finish(vec![replay::run(&l, src, Some(dst))], out, prof);
    }
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let r = replay::check_streaming(path, src, dst, progress).map_err(|e| e.to_string())?;
    finish(vec![r], out, prof)
}

/// `qmig preflight`.
pub fn preflight(sides: &SideArgs, json: bool) -> Result<i32, String> {
    let (src, dst) = sides.profiles()?;
    let p = outcome::preflight(&src, &dst);
    let predicted = p.first().map(|x| x.2.clone()).unwrap_or(outcome::Outcome {
        src: outcome::Status::Completed,
        dst: outcome::Status::Completed,
        cause: None,
    });
    if json {
        let v = serde_json::json!({
            "outcome": predicted,
            "problems": p.iter().map(|(r, m, o)| serde_json::json!({"rule": r, "message": m, "outcome": o})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        let who = |p: &SideProfile| {
            let dialect = if p.dialect == Dialect::Merged { String::new() } else { format!(" rfc:{}", p.dialect) };
            format!("{}{dialect} ({})", p.version, p.machine.as_deref().unwrap_or("default machine"))
        };
        println!("source {} → destination {}", who(&src), who(&dst));
        println!(
            "predicted: src {:?}, dst {:?}{}",
            predicted.src,
            predicted.dst,
            predicted.cause.map(|c| format!(", cause {c}")).unwrap_or_default()
        );
        for (r, m, _) in &p {
            println!("  {r}: {m}");
        }
    }
    Ok(0)
}

/// `qmig rules`.
pub fn rules(json: bool) -> Result<i32, String> {
    if json {
        println!("{}", serde_json::to_string_pretty(crate::rules::CATALOGUE).unwrap_or_default());
    } else {
        for r in crate::rules::CATALOGUE {
            println!(
                "{:<44} {:<6} {:<11} {}",
                r.id,
                format!("{:?}", r.side).to_lowercase(),
                format!("{:?}", r.severity).to_lowercase(),
                r.requirement
            );
            println!("{:<44} {}", "", r.qemu_ref);
        }
    }
    Ok(0)
}

/// `qmig record`.
pub fn record(listen: &str, upstream: &str, out: &Path, timeout: u64, idle_exit_ms: u64, max_conns: Option<usize>) -> Result<i32, String> {
    use crate::peer::record::{RecordConfig, Recorder};
    let cfg = RecordConfig {
        listen: listen.parse()?,
        upstream: upstream.parse()?,
        out: out.to_path_buf(),
        timeout: std::time::Duration::from_secs(timeout),
        idle_exit: std::time::Duration::from_millis(idle_exit_ms),
        max_conns,
    };
    let r = Recorder::bind(cfg).map_err(|e| format!("bind {listen}: {e}"))?;
    println!("listening on {}", r.local());
    let _ = std::io::stdout().flush();
    let sum = r.serve().map_err(|e| e.to_string())?;
    eprintln!(
        "recorded {} connection(s) into {}{}",
        sum.connections,
        out.display(),
        if sum.timed_out { " (stopped by --timeout)" } else { "" }
    );
    Ok(if sum.timed_out { 3 } else { 0 })
}

/// Arguments of `qmig listen`.
#[derive(Debug, Clone)]
pub struct ListenArgs {
    /// Address.
    pub addr: String,
    /// Destination caps.
    pub caps: Vec<String>,
    /// Source caps for the verdict.
    pub src_caps: Option<Vec<String>>,
    /// Dialect.
    pub dialect: String,
    /// Version.
    pub version: String,
    /// Output directory.
    pub out: PathBuf,
    /// Timeout (s).
    pub timeout: u64,
    /// Pages to request in postcopy.
    pub request_pages: u32,
    /// Knobs.
    pub misbehave: Vec<String>,
}

/// Run `qmig listen` on an already bound listener; returns the report and the summary.
pub fn listen_on(a: &ListenArgs, listener: crate::peer::record::Listener) -> Result<(Report, crate::peer::listen::ListenSummary), String> {
    use crate::peer::listen::{run, Knob, ListenConfig};
    let version: Version = a.version.parse()?;
    let dialect: Dialect = a.dialect.parse()?;
    let knobs = a.misbehave.iter().filter(|k| !k.is_empty()).map(|k| k.parse::<Knob>()).collect::<Result<Vec<_>, _>>()?;
    let caps: Vec<String> = a.caps.iter().filter(|c| !c.is_empty()).cloned().collect();
    let cfg = ListenConfig {
        addr: listener.local(),
        caps: caps.clone(),
        ctx: Context { dialect, version: Some(version), ..Context::default() },
        out: a.out.clone(),
        timeout: std::time::Duration::from_secs(a.timeout),
        request_pages: a.request_pages,
        knobs,
    };
    let sum = run(&cfg, listener).map_err(|e| e.to_string())?;
    let src_caps = a.src_caps.clone().unwrap_or_else(|| caps.clone());
    let meta = serde_json::json!({
        "name": a.out.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default(),
        "kind": "socket",
        "origin": "qemu",
        "desc": "recorded by qmig listen (qmig as the destination)",
        "src": {"qemu": a.version, "caps": src_caps},
        "dst": {"qemu": a.version, "caps": caps, "label": "qmig listen"},
        "connections": (0..sum.connections).map(|i| serde_json::json!({"file": format!("conn{i}.qmtrace")})).collect::<Vec<_>>(),
    });
    std::fs::write(a.out.join("case.json"), serde_json::to_vec_pretty(&meta).unwrap_or_default()).map_err(|e| e.to_string())?;
    let l = replay::load(&a.out).map_err(|e| e.to_string())?;
    let r = replay::replay_case(&l);
    std::fs::write(
        a.out.join("report.json"),
        serde_json::to_vec_pretty(&serde_json::json!({"listen": sum, "report": r})).unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    Ok((r, sum))
}

/// `qmig listen`.
pub fn listen(a: ListenArgs) -> Result<i32, String> {
    let addr: crate::peer::record::Addr = a.addr.parse()?;
    let l = crate::peer::record::Listener::bind(&addr).map_err(|e| format!("bind {}: {e}", a.addr))?;
    println!("listening on {}", l.local());
    let _ = std::io::stdout().flush();
    let (r, sum) = listen_on(&a, l)?;
    print!("{}", r.text());
    println!(
        "  listen:      {} connection(s), {} main-stream bytes, sent {:?}{}{}",
        sum.connections,
        sum.main_bytes,
        sum.rp_sent,
        sum.error.as_ref().map(|e| format!(", error: {e}")).unwrap_or_default(),
        if sum.timed_out { ", TIMED OUT" } else { "" }
    );
    let ok = sum.completed && sum.error.is_none() && !sum.timed_out && r.exit_code() == 0;
    Ok(if ok { 0 } else { 1 })
}

/// The destination's migration status through its QMP socket (bounded waits).
pub fn qmp_status(path: &Path, wait_final: std::time::Duration) -> Option<String> {
    use std::io::{BufRead, BufReader};
    let s = std::os::unix::net::UnixStream::connect(path).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok()?;
    let mut r = BufReader::new(s.try_clone().ok()?);
    let mut w = s;
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut exec = |c: &str| -> Option<serde_json::Value> {
        writeln!(w, "{}", serde_json::json!({"execute": c})).ok()?;
        loop {
            let mut l = String::new();
            if r.read_line(&mut l).ok()? == 0 {
                return None;
            }
            let v: serde_json::Value = serde_json::from_str(&l).ok()?;
            if v.get("return").is_some() || v.get("error").is_some() {
                return Some(v);
            }
        }
    };
    exec("qmp_capabilities")?;
    let until = std::time::Instant::now() + wait_final;
    loop {
        let st = exec("query-migrate")?.pointer("/return/status").and_then(|x| x.as_str()).unwrap_or("none").to_string();
        if matches!(st.as_str(), "completed" | "failed") || std::time::Instant::now() >= until {
            return Some(st);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `qmig send`.
pub fn send(case: &Path, to: &str, dst_qmp: Option<&Path>, timeout: u64) -> Result<i32, String> {
    let l = replay::load(case).map_err(|e| e.to_string())?;
    let meta = l.meta.clone().ok_or("not a case directory")?;
    let mut files: Vec<PathBuf> = meta
        .get("connections")
        .and_then(|c| c.as_array())
        .map(|a| a.iter().filter_map(|c| c.get("file").and_then(|f| f.as_str())).map(|f| case.join(f)).collect())
        .unwrap_or_default();
    if files.is_empty() {
        files = (0..64).map(|i| case.join(format!("conn{i}.qmtrace"))).filter(|p| p.is_file()).collect();
    }
    let traces: Vec<Vec<u8>> = files.iter().map(std::fs::read).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    let to: crate::peer::record::Addr = to.parse()?;
    let rep = crate::peer::send::send(&traces, &to, std::time::Duration::from_secs(timeout))?;
    let recorded_status = meta.pointer("/dst/final_status").and_then(|v| v.as_str()).map(str::to_string);
    let now_status = dst_qmp.and_then(|p| qmp_status(p, std::time::Duration::from_secs(timeout.min(30))));
    let shut = |v: &[String]| v.iter().rev().find(|m| m.contains("SHUT")).cloned();
    let mut diffs = Vec::new();
    if shut(&rep.rp_now) != shut(&rep.rp_recorded) {
        diffs.push(format!("SHUT now {:?}, recorded {:?}", shut(&rep.rp_now), shut(&rep.rp_recorded)));
    }
    let kinds = |v: &[String]| v.iter().map(|m| m.split(' ').next().unwrap_or("").to_string()).collect::<std::collections::BTreeSet<_>>();
    if kinds(&rep.rp_now) != kinds(&rep.rp_recorded) {
        diffs.push(format!("return-path message types now {:?}, recorded {:?}", kinds(&rep.rp_now), kinds(&rep.rp_recorded)));
    }
    if let (Some(n), Some(r)) = (&now_status, &recorded_status) {
        // A destination that exited on its own after failing has no QMP left to ask.
        if n != r {
            diffs.push(format!("destination status now {n}, recorded {r}"));
        }
    }
    println!("{}: sent {} bytes on the main connection over {} connection(s)", l.name, rep.main_bytes, rep.connections);
    println!("  return path now:      {:?}", rep.rp_now);
    println!("  return path recorded: {:?}", rep.rp_recorded);
    if let Some(n) = &now_status {
        println!("  destination status:   {n} (recorded {})", recorded_status.as_deref().unwrap_or("?"));
    }
    if diffs.is_empty() {
        println!("  the destination behaved as recorded");
        Ok(0)
    } else {
        println!("  DIFFERS: {}", diffs.join("; "));
        Ok(1)
    }
}
