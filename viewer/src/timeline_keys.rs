//! A keyboard cursor on the memory timeline: the arrows move it through the visible window,
//! Shift and an arrow select the range it sweeps (from an anchor: where the selection was
//! started, or the far end of the selection the cursor sits on), Home and End jump to the
//! window's ends. Pure; tested natively.

/// Steps across the visible window: one arrow press moves the cursor 1 % of it.
pub const STEPS: u64 = 100;

/// A key the timeline handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeKey {
    Left,
    Right,
    Start,
    End,
}

/// The cursor: a time in ns, and where the selection being swept started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeCursor {
    pub at: u64,
    pub anchor: Option<u64>,
}

/// The cursor after `key` in the window `[t0, t1]`, and, when `extend` (Shift is held), the
/// range selected from the anchor to the new cursor. `range` is the selection on screen.
pub fn time_key(
    cursor: TimeCursor,
    key: TimeKey,
    extend: bool,
    (t0, t1): (u64, u64),
    range: Option<(u64, u64)>,
) -> (TimeCursor, Option<(u64, u64)>) {
    let step = (t1.saturating_sub(t0) / STEPS).max(1);
    let from = cursor.at.clamp(t0, t1);
    let at = match key {
        TimeKey::Left => from.saturating_sub(step).max(t0),
        TimeKey::Right => from.saturating_add(step).min(t1),
        TimeKey::Start => t0,
        TimeKey::End => t1,
    };
    if !extend {
        return (TimeCursor { at, anchor: None }, None);
    }
    // Sweeping on from the end of the selection the cursor is at keeps its other end.
    let anchor = cursor.anchor.unwrap_or(match range {
        Some((a, b)) if from == b => a,
        Some((a, b)) if from == a => b,
        _ => from,
    });
    let selected = (at != anchor).then(|| (anchor.min(at), anchor.max(at)));
    (TimeCursor { at, anchor: Some(anchor) }, selected)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: (u64, u64) = (1_000, 2_000);

    #[test]
    fn arrows_move_by_one_percent_within_the_window() {
        let c = TimeCursor { at: 1_500, anchor: None };
        assert_eq!(time_key(c, TimeKey::Right, false, WINDOW, None).0.at, 1_510);
        assert_eq!(time_key(c, TimeKey::Left, false, WINDOW, None).0.at, 1_490);
        let edge = TimeCursor { at: 1_995, anchor: None };
        assert_eq!(time_key(edge, TimeKey::Right, false, WINDOW, None).0.at, 2_000);
        assert_eq!(time_key(c, TimeKey::Start, false, WINDOW, None).0.at, 1_000);
        assert_eq!(
            time_key(c, TimeKey::End, false, WINDOW, None),
            (TimeCursor { at: 2_000, anchor: None }, None)
        );
        let outside = TimeCursor { at: 10, anchor: None };
        assert_eq!(time_key(outside, TimeKey::Right, false, WINDOW, None).0.at, 1_010);
    }

    #[test]
    fn shift_arrows_sweep_a_selection_from_the_anchor() {
        let c = TimeCursor { at: 1_500, anchor: None };
        let (c, r) = time_key(c, TimeKey::Right, true, WINDOW, None);
        assert_eq!((c.anchor, r), (Some(1_500), Some((1_500, 1_510))));
        let (c, r) = time_key(c, TimeKey::Right, true, WINDOW, r);
        assert_eq!(r, Some((1_500, 1_520)));
        // Back past the anchor: the selection flips to its other side.
        let (c, _) = time_key(c, TimeKey::Left, true, WINDOW, r);
        let (c, _) = time_key(c, TimeKey::Left, true, WINDOW, r);
        let (_, r) = time_key(c, TimeKey::Left, true, WINDOW, r);
        assert_eq!(r, Some((1_490, 1_500)));
        // A plain arrow ends the sweep.
        let (c, r) = time_key(c, TimeKey::Left, false, WINDOW, r);
        assert_eq!((c.anchor, r), (None, None));
    }

    #[test]
    fn sweeping_from_an_end_of_the_selection_keeps_its_other_end() {
        let selected = Some((1_200, 1_600));
        let at_end = TimeCursor { at: 1_600, anchor: None };
        assert_eq!(
            time_key(at_end, TimeKey::Right, true, WINDOW, selected).1,
            Some((1_200, 1_610))
        );
        let at_start = TimeCursor { at: 1_200, anchor: None };
        assert_eq!(
            time_key(at_start, TimeKey::Left, true, WINDOW, selected).1,
            Some((1_190, 1_600))
        );
    }
}
