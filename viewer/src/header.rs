//! The recording's facts: command line, Python, duration, peaks, what was left at exit.

use leptos::prelude::*;
use memlens_format::Recording;

use crate::units;

/// Joins a command line, quoting arguments the way a POSIX shell would need them.
pub fn shell_join(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[component]
pub(crate) fn Fact(
    label: &'static str,
    value: String,
    #[prop(optional)] sub: Option<String>,
    id: &'static str,
) -> impl IntoView {
    view! {
        <div class="fact" id=id>
            <div class="fact-label">{label}</div>
            <div class="fact-value">{value}</div>
            {sub.map(|s| view! { <div class="fact-sub">{s}</div> })}
        </div>
    }
}

/// The header block for a recording.
#[component]
pub fn Header(dir: crate::ByPtr<crate::load::Directory>) -> impl IntoView {
    let rec: &Recording = &dir.0.recording;
    let meta = rec.meta();
    let s = rec.summary();
    let command = if meta.command_line.is_empty() {
        "(command line not recorded)".to_string()
    } else {
        shell_join(&meta.command_line)
    };
    let python = match (meta.python_implementation.as_str(), meta.python_version.as_str()) {
        (_, "") => "unknown".to_string(),
        ("", v) => format!("Python {v}"),
        (imp, v) => format!("{imp} {v}"),
    };
    let exit = rec.end().map(|e| match (e.exit_code, e.signal) {
        (_, Some(sig)) => format!("killed by signal {sig}"),
        (Some(code), None) => format!("exit code {code}"),
        (None, None) => "ended".to_string(),
    });
    // A descendant's times are on the program's clock: it ended at its duration.
    let (duration_label, process) = match meta.ppid() {
        Some(ppid) => {
            let fact = view! {
                <Fact
                    id="fact-process"
                    label="Process"
                    value=format!("pid {}", meta.pid)
                    sub=format!("started by pid {ppid}")
                />
            };
            ("Ended at", Some(fact))
        }
        None => ("Duration", None),
    };
    // A sampled recording's figures are estimates: said above everything else.
    let estimates = memlens_analysis::sampling_notice(rec).map(|n| {
        view! {
            <div class="banner banner-warning" id="sampling-notice" role="note">
                <strong>"Estimates"</strong>
                {n}
            </div>
        }
    });
    view! {
        {estimates}
        <section class="header" aria-label="Recording summary">
            <div class="command" id="command-line" title="Command line">
                {command}
            </div>
            <div class="facts">
                {process}
                <Fact id="fact-python" label="Python" value=python sub=meta.platform.clone() />
                <Fact
                    id="fact-duration"
                    label=duration_label
                    value=units::duration_ns(s.duration_ns)
                    sub=exit.unwrap_or_default()
                />
                <Fact
                    id="fact-peak-heap"
                    label="Peak traced heap"
                    value=units::bytes(s.peak_heap)
                    sub=format!("at {}", units::time_ns(s.peak_heap_time_ns))
                />
                <Fact
                    id="fact-peak-rss"
                    label="Peak RSS"
                    value=units::bytes(s.peak_rss)
                    sub=format!("at {}", units::time_ns(s.peak_rss_time_ns))
                />
                <Fact
                    id="fact-leaked"
                    label="Left at exit"
                    value=units::bytes(s.end_heap)
                    sub=units::plural(s.end_live_count, "live allocation", "live allocations")
                />
                <Fact
                    id="fact-allocations"
                    label="Allocations"
                    value=units::count(s.alloc_count)
                    sub=format!("{} in total", units::bytes(s.alloc_bytes))
                />
            </div>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::shell_join;

    #[test]
    fn quotes_only_what_needs_it() {
        let args: Vec<String> = ["python3", "app.py", "--name", "a b", "it's", ""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(shell_join(&args), r#"python3 app.py --name 'a b' 'it'\''s' ''"#);
    }
}
