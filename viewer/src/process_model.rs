//! The processes of a recording as every view shows them: each one's colour, and the view
//! state that shows one of them (used by the process picker and the family chart).

use crate::protocol::ProcessInfo;
use crate::url_state::{ProcessChoice, ViewState};

/// The colour of the `i`-th process of the list: hues a golden angle apart, so neighbours
/// (a pool's workers) differ, and the program (the first) is the heap's blue; the lightness
/// steps through three levels too, so that processes whose hues come close again (3 and 11:
/// 20 degrees apart) still differ.
pub fn process_color(i: usize, dark: bool) -> String {
    let hue = (215.0 + i as f64 * 137.508) % 360.0;
    let light = if dark { 60.0 } else { 56.0 } + [0.0, -10.0, 10.0][i % 3];
    format!("hsl({hue:.0} 62% {light:.0}%)")
}

/// The state for showing `choice`: a descendant's timeline opens on its lifetime.
pub fn state_for(state: &ViewState, choice: ProcessChoice, list: &[ProcessInfo]) -> ViewState {
    let lifetime = match choice {
        ProcessChoice::One(n) if n > 0 => list
            .iter()
            .find(|p| p.number == n)
            .map(|p| (p.started_ns, p.ended_ns.max(p.started_ns) + 1)),
        _ => None,
    };
    state.for_process(Some(choice), lifetime)
}
