//! The view state that lives in the URL hash, so a view can be shared and survives reloads:
//! `#process=3&mode=leaks&zoom=main:app.py,load:app.py&range=1000-2000&window=0-5000&q=json`.
//! Pure; tested natively.

/// What the flame graph shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FlameMode {
    /// Memory live at the traced heap's peak.
    #[default]
    AtPeak,
    /// Memory still live at the end of the recording.
    Leaks,
    /// Everything ever allocated.
    Total,
    /// What was live at the heap's highest point within the selected time range.
    Range,
}

impl FlameMode {
    /// All modes, in button order.
    pub const ALL: [FlameMode; 4] =
        [FlameMode::AtPeak, FlameMode::Leaks, FlameMode::Total, FlameMode::Range];

    /// The name used in the URL.
    pub fn key(self) -> &'static str {
        match self {
            FlameMode::AtPeak => "peak",
            FlameMode::Leaks => "leaks",
            FlameMode::Total => "total",
            FlameMode::Range => "range",
        }
    }

    /// The button label.
    pub fn label(self) -> &'static str {
        match self {
            FlameMode::AtPeak => "At peak",
            FlameMode::Leaks => "Leaks (live at end)",
            FlameMode::Total => "Total allocated",
            FlameMode::Range => "Selected range",
        }
    }

    /// What the mode shows, for its button's tooltip.
    pub fn description(self) -> &'static str {
        match self {
            FlameMode::AtPeak => "Memory that was live when the traced heap reached its peak",
            FlameMode::Leaks => "Memory still allocated when the program ended",
            FlameMode::Total => "Everything allocated over the whole run, freed or not",
            FlameMode::Range => {
                "What was live at the highest point of the range selected on the timeline"
            }
        }
    }

    fn from_key(key: &str) -> Option<FlameMode> {
        FlameMode::ALL.into_iter().find(|m| m.key() == key)
    }
}

/// How flame-graph frames are coloured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ColorBy {
    /// Warm for the program's own code, cool for the standard library and packages.
    #[default]
    Kind,
    /// One hue per file (module), so a module's frames can be followed across the graph.
    File,
}

/// How sortable tables are ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SortBy {
    #[default]
    SelfBytes,
    TotalBytes,
    SelfCount,
    TotalCount,
}

impl SortBy {
    pub const ALL: [SortBy; 4] =
        [SortBy::SelfBytes, SortBy::TotalBytes, SortBy::SelfCount, SortBy::TotalCount];

    pub fn key(self) -> &'static str {
        match self {
            SortBy::SelfBytes => "self",
            SortBy::TotalBytes => "total",
            SortBy::SelfCount => "self-count",
            SortBy::TotalCount => "total-count",
        }
    }

    fn from_key(key: &str) -> Option<SortBy> {
        SortBy::ALL.into_iter().find(|m| m.key() == key)
    }
}

/// One step of a flame-graph zoom path: a frame named by function and file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ZoomStep {
    pub function: String,
    pub file: String,
}

/// Which process of a recording of several the views show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProcessChoice {
    /// One process, by its number in the file (0: the program, 1, 2, ...: its descendants).
    One(u32),
    /// All of them together.
    All,
}

impl ProcessChoice {
    /// The worker's name for it: a process number, `None` for all.
    pub fn number(self) -> Option<u32> {
        match self {
            ProcessChoice::One(n) => Some(n),
            ProcessChoice::All => None,
        }
    }
}

/// Everything the URL hash remembers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewState {
    /// The process shown, in a recording of several (`None`: the program).
    pub process: Option<ProcessChoice>,
    pub mode: FlameMode,
    /// Frames from the root down to the zoomed node (empty: not zoomed).
    pub zoom: Vec<ZoomStep>,
    /// Selected time range in nanoseconds, start <= end.
    pub range: Option<(u64, u64)>,
    /// The timeline's visible window in nanoseconds (`None`: the whole recording).
    pub window: Option<(u64, u64)>,
    /// Flame graph search text.
    pub search: String,
    /// Compare mode: changes smaller than this share of the larger total, in basis points
    /// (1/100 %), are drawn as noise.
    pub noise_bp: u32,
    /// Only allocations made by this thread (index of the recording's thread table).
    pub thread: Option<u32>,
    /// Show CPython's internals (the import system, the interpreter's native frames) and
    /// memlens' own frames (hidden by default).
    pub show_internal: bool,
    /// Hide native frames (recordings made with `--native-stacks`; shown by default).
    pub hide_native: bool,
    pub color: ColorBy,
    /// Root at the bottom (flame) instead of at the top (icicle, the default).
    pub flame_up: bool,
    /// Call-site table order and filter.
    pub sort: SortBy,
    pub filter: String,
    /// Objects panel: the census shown (index in the recording's censuses; `None`: the last).
    pub census: Option<u32>,
    /// The census it is compared with (the growth view), if any.
    pub since: Option<u32>,
    /// Rank types by number of objects instead of shallow size.
    pub objects_by_count: bool,
}

/// Default noise threshold of the differential flame graph: 0.5 %.
pub const DEFAULT_NOISE_BP: u32 = 50;

impl Default for ViewState {
    fn default() -> Self {
        ViewState {
            process: None,
            mode: FlameMode::default(),
            zoom: Vec::new(),
            range: None,
            window: None,
            search: String::new(),
            noise_bp: DEFAULT_NOISE_BP,
            thread: None,
            show_internal: false,
            hide_native: false,
            color: ColorBy::Kind,
            flame_up: false,
            sort: SortBy::SelfBytes,
            filter: String::new(),
            census: None,
            since: None,
            objects_by_count: false,
        }
    }
}

impl ViewState {
    /// Parses a hash (with or without the leading `#`). Unknown keys and bad values are
    /// ignored, so old or hand-edited links still open.
    pub fn from_hash(hash: &str) -> ViewState {
        let mut state = ViewState::default();
        for pair in hash.trim_start_matches('#').split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "process" => {
                    state.process = match value {
                        "all" => Some(ProcessChoice::All),
                        n => n.parse().ok().filter(|&n| n > 0).map(ProcessChoice::One),
                    };
                }
                "mode" => state.mode = FlameMode::from_key(value).unwrap_or_default(),
                "zoom" => {
                    state.zoom = value
                        .split(',')
                        .filter_map(|step| {
                            let (function, file) = step.split_once(':')?;
                            Some(ZoomStep { function: decode(function)?, file: decode(file)? })
                        })
                        .collect();
                }
                "range" => state.range = span(value),
                "window" => state.window = span(value).filter(|(a, b)| a < b),
                "q" => state.search = decode(value).unwrap_or_default(),
                "thread" => state.thread = value.parse().ok(),
                "internal" => state.show_internal = value == "1",
                "native" => state.hide_native = value == "0",
                "color" => {
                    state.color = if value == "file" { ColorBy::File } else { ColorBy::Kind }
                }
                "layout" => state.flame_up = value == "flame",
                "sort" => state.sort = SortBy::from_key(value).unwrap_or_default(),
                "filter" => state.filter = decode(value).unwrap_or_default(),
                "census" => state.census = value.parse().ok(),
                "since" => state.since = value.parse().ok(),
                "objects" => state.objects_by_count = value == "count",
                "noise" => {
                    if let Ok(percent) = value.parse::<f64>() {
                        state.noise_bp = (percent.clamp(0.0, 100.0) * 100.0).round() as u32;
                    }
                }
                _ => {}
            }
        }
        state
    }

    /// The hash for this state (`""` for the default state), leading `#` included otherwise.
    pub fn to_hash(&self) -> String {
        let mut parts = Vec::new();
        match self.process {
            Some(ProcessChoice::All) => parts.push("process=all".to_string()),
            Some(ProcessChoice::One(n)) if n > 0 => parts.push(format!("process={n}")),
            _ => {}
        }
        if self.mode != FlameMode::default() {
            parts.push(format!("mode={}", self.mode.key()));
        }
        if !self.zoom.is_empty() {
            let steps: Vec<String> = self
                .zoom
                .iter()
                .map(|s| format!("{}:{}", encode(&s.function), encode(&s.file)))
                .collect();
            parts.push(format!("zoom={}", steps.join(",")));
        }
        if let Some((a, b)) = self.range {
            parts.push(format!("range={a}-{b}"));
        }
        if let Some((a, b)) = self.window {
            parts.push(format!("window={a}-{b}"));
        }
        if !self.search.is_empty() {
            parts.push(format!("q={}", encode(&self.search)));
        }
        if let Some(t) = self.thread {
            parts.push(format!("thread={t}"));
        }
        if self.show_internal {
            parts.push("internal=1".to_string());
        }
        if self.hide_native {
            parts.push("native=0".to_string());
        }
        if self.color == ColorBy::File {
            parts.push("color=file".to_string());
        }
        if self.flame_up {
            parts.push("layout=flame".to_string());
        }
        if self.sort != SortBy::default() {
            parts.push(format!("sort={}", self.sort.key()));
        }
        if !self.filter.is_empty() {
            parts.push(format!("filter={}", encode(&self.filter)));
        }
        if let Some(c) = self.census {
            parts.push(format!("census={c}"));
        }
        if let Some(c) = self.since {
            parts.push(format!("since={c}"));
        }
        if self.objects_by_count {
            parts.push("objects=count".to_string());
        }
        if self.noise_bp != DEFAULT_NOISE_BP {
            parts.push(format!("noise={}", f64::from(self.noise_bp) / 100.0));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("#{}", parts.join("&"))
        }
    }
}

impl ViewState {
    /// Selects the time range `range` on a timeline (`None`: clears it): the flame graph shows
    /// the range's peak while there is one, and the peak of all again once it is cleared.
    pub fn select_range(&mut self, range: Option<(u64, u64)>) {
        self.range = range;
        if range.is_some() {
            self.mode = FlameMode::Range;
        } else if self.mode == FlameMode::Range {
            self.mode = FlameMode::AtPeak;
        }
    }

    /// The state for showing `choice` (`None`: the program): what belongs to the process
    /// shown before (its zoom path, selected range, window, thread, census) is left behind;
    /// what the user set up to look with (search, filters, colours, layout, sort) stays. A
    /// process's timeline opens on `window` (its lifetime), if given.
    pub fn for_process(&self, choice: Option<ProcessChoice>, window: Option<(u64, u64)>) -> Self {
        let choice = choice.filter(|&c| c != ProcessChoice::One(0));
        let mode = if self.mode == FlameMode::Range { FlameMode::AtPeak } else { self.mode };
        ViewState {
            process: choice,
            mode,
            zoom: Vec::new(),
            range: None,
            window,
            thread: None,
            census: None,
            since: None,
            ..self.clone()
        }
    }
}

/// How a change of the view state is written to the browser's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistoryWrite {
    /// A new entry: the user went somewhere (zoomed, changed mode, selected a census...), and
    /// Back returns to where they were.
    Push,
    /// The current entry is updated: typing in a search box, or one range selection being
    /// adjusted (a drag, Shift+arrows) do not each add an entry.
    Replace,
}

impl ViewState {
    /// How the change from `self` (the state of the current history entry) to `next` is
    /// written. `adjusting_range`: the write that made the current entry changed the range.
    pub fn history_write(&self, next: &ViewState, adjusting_range: bool) -> HistoryWrite {
        let typed =
            ViewState { search: next.search.clone(), filter: next.filter.clone(), ..self.clone() };
        if typed == *next {
            return HistoryWrite::Replace;
        }
        let ranged = ViewState { range: next.range, ..typed };
        if ranged == *next && adjusting_range {
            HistoryWrite::Replace
        } else {
            HistoryWrite::Push
        }
    }
}

/// `A-B` (nanoseconds, in either order) as `(min, max)`.
fn span(value: &str) -> Option<(u64, u64)> {
    let (a, b) = value.split_once('-')?;
    let (a, b) = (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?);
    Some((a.min(b), a.max(b)))
}

/// Percent-encodes everything but unreserved characters and `/` (kept for readable paths).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reverses [`encode`] (and any other percent-encoding); `None` for malformed input.
fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_state_has_an_empty_hash() {
        assert_eq!(ViewState::default().to_hash(), "");
        assert_eq!(ViewState::from_hash(""), ViewState::default());
        assert_eq!(ViewState::from_hash("#"), ViewState::default());
    }

    #[test]
    fn round_trips_awkward_names() {
        let state = ViewState {
            process: Some(ProcessChoice::One(12)),
            mode: FlameMode::Range,
            zoom: vec![
                ZoomStep { function: "<module>".into(), file: "/srv/app, v2/main.py".into() },
                ZoomStep { function: "Cache.get:inner&x=1".into(), file: "<frozen os>".into() },
                ZoomStep { function: "naïve ünïcode".into(), file: "%41.py".into() },
            ],
            range: Some((1_000, 2_500_000_000)),
            window: Some((500, 3_000_000_000)),
            search: "json # dumps".into(),
            noise_bp: 200,
            thread: Some(3),
            show_internal: true,
            hide_native: true,
            color: ColorBy::File,
            flame_up: true,
            sort: SortBy::TotalCount,
            filter: "a&b".into(),
            census: Some(2),
            since: Some(0),
            objects_by_count: true,
        };
        let hash = state.to_hash();
        assert!(
            hash.starts_with("#process=12&mode=range&zoom=%3Cmodule%3E:/srv/app%2C%20v2/main.py,"),
            "{hash}"
        );
        assert_eq!(ViewState::from_hash(&hash), state);
        assert!(hash.ends_with("&census=2&since=0&objects=count&noise=2"), "{hash}");
    }

    #[test]
    fn bad_values_are_ignored() {
        let s = ViewState::from_hash("#mode=bogus&range=9-x&zoom=nocolon,a:b&q=%ZZ&extra=1");
        assert_eq!(s.mode, FlameMode::AtPeak);
        assert_eq!(s.range, None);
        assert_eq!(s.zoom, vec![ZoomStep { function: "a".into(), file: "b".into() }]);
        assert_eq!(s.search, "");
    }

    #[test]
    fn noise_threshold_in_percent() {
        assert_eq!(ViewState::from_hash("noise=0.1").noise_bp, 10);
        assert_eq!(ViewState::from_hash("noise=x").noise_bp, DEFAULT_NOISE_BP);
        let s = ViewState { noise_bp: 0, ..ViewState::default() };
        assert_eq!(s.to_hash(), "#noise=0");
        assert_eq!(ViewState::from_hash(&s.to_hash()), s);
    }

    #[test]
    fn navigation_adds_history_entries_typing_and_adjusting_a_range_do_not() {
        let at = ViewState::default();
        let typed = ViewState { search: "json".into(), filter: "app".into(), ..at.clone() };
        assert_eq!(at.history_write(&typed, false), HistoryWrite::Replace);
        let zoomed = ViewState {
            zoom: vec![ZoomStep { function: "main".into(), file: "app.py".into() }],
            ..at.clone()
        };
        assert_eq!(at.history_write(&zoomed, false), HistoryWrite::Push);
        assert_eq!(
            at.history_write(&zoomed, true),
            HistoryWrite::Push,
            "a zoom is never adjusting"
        );
        let leaks = ViewState { mode: FlameMode::Leaks, search: "x".into(), ..at.clone() };
        assert_eq!(at.history_write(&leaks, false), HistoryWrite::Push);
        // A selection starts with an entry of its own, then follows the drag in place.
        let first = ViewState { range: Some((1, 2)), mode: FlameMode::Range, ..at.clone() };
        assert_eq!(at.history_write(&first, false), HistoryWrite::Push);
        let wider = ViewState { range: Some((1, 5)), ..first.clone() };
        assert_eq!(first.history_write(&wider, true), HistoryWrite::Replace);
        assert_eq!(first.history_write(&wider, false), HistoryWrite::Push, "a new selection");
        let cleared = ViewState { range: None, mode: FlameMode::AtPeak, ..wider.clone() };
        assert_eq!(wider.history_write(&cleared, true), HistoryWrite::Push);
    }

    #[test]
    fn the_process_shown_is_in_the_hash() {
        let all = ViewState::from_hash("#process=all&q=build");
        assert_eq!(all.process, Some(ProcessChoice::All));
        assert_eq!(all.to_hash(), "#process=all&q=build");
        assert_eq!(ViewState::from_hash("process=3").process, Some(ProcessChoice::One(3)));
        // The program is the default: no `process` in its hash.
        for program in ["process=0", "process=", "process=-1", "process=x"] {
            assert_eq!(ViewState::from_hash(program).process, None, "{program}");
        }
        let state = ViewState { process: Some(ProcessChoice::One(0)), ..ViewState::default() };
        assert_eq!(state.to_hash(), "");
    }

    #[test]
    fn another_process_leaves_the_last_ones_places_behind() {
        let here = ViewState {
            mode: FlameMode::Range,
            zoom: vec![ZoomStep { function: "main".into(), file: "app.py".into() }],
            range: Some((5, 9)),
            window: Some((1, 10)),
            thread: Some(2),
            census: Some(1),
            since: Some(0),
            search: "build".into(),
            color: ColorBy::File,
            ..ViewState::default()
        };
        let there = here.for_process(Some(ProcessChoice::One(4)), Some((100, 200)));
        assert_eq!(there.process, Some(ProcessChoice::One(4)));
        assert_eq!(
            (there.mode, there.range, there.window),
            (FlameMode::AtPeak, None, Some((100, 200)))
        );
        assert!(there.zoom.is_empty());
        assert_eq!((there.thread, there.census, there.since), (None, None, None));
        assert_eq!((there.search.as_str(), there.color), ("build", ColorBy::File), "kept");
        let leaks = ViewState { mode: FlameMode::Leaks, ..here.clone() };
        assert_eq!(leaks.for_process(Some(ProcessChoice::All), None).mode, FlameMode::Leaks);
        assert_eq!(here.for_process(Some(ProcessChoice::One(0)), None).process, None);
        assert_eq!(here.history_write(&there, false), HistoryWrite::Push, "Back returns");
    }

    #[test]
    fn reversed_range_is_normalised() {
        assert_eq!(ViewState::from_hash("range=50-10").range, Some((10, 50)));
        assert_eq!(ViewState::from_hash("window=50-10").window, Some((10, 50)));
        assert_eq!(ViewState::from_hash("window=7-7").window, None, "an empty window");
    }
}
