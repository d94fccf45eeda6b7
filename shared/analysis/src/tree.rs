//! What every call tree here shares ([`crate::FlameTree`], [`crate::DiffTree`]): nodes in a
//! vector with parents before children, the path to a node, the layout of a zoomed subtree
//! into rows of rectangles by weight (callees too narrow to draw merged into one rectangle),
//! and hit testing of a layout.

/// A node of a call tree, as layout sees it.
pub(crate) trait TreeNode {
    /// What a rectangle stands for (memory, or base and head memory).
    type Figures: Copy + Default;

    fn parent(&self) -> u32;
    fn children(&self) -> &[u32];
    /// Width in the layout.
    fn weight(&self) -> u64;
    fn figures(&self) -> Self::Figures;
    /// Adds a merged callee's figures.
    fn merge(into: &mut Self::Figures, other: Self::Figures);
}

/// A laid-out rectangle: the node (`None` for merged callees), its row (0 = the zoomed node,
/// its ancestors above with negative rows), left edge and width in 0..1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Placed<F> {
    pub node: Option<u32>,
    pub row: i32,
    pub x: f64,
    pub w: f64,
    pub figures: F,
}

/// The path from the root (node 0) to `node`, root first.
pub(crate) fn path<N: TreeNode>(nodes: &[N], node: u32) -> Vec<u32> {
    let mut path = vec![node];
    let mut at = node;
    while at != 0 {
        at = nodes.get(at as usize).map_or(0, |n| n.parent());
        path.push(at);
    }
    path.reverse();
    path
}

/// Lays out the subtree under `zoom` to unit width by weight, its ancestors above as
/// full-width context rows. Callees narrower than `min_w` are merged into one rectangle per
/// parent (their figures still count); callees of no width are left out. Sorted by row, then x.
pub(crate) fn layout<N: TreeNode>(nodes: &[N], zoom: u32, min_w: f64) -> Vec<Placed<N::Figures>> {
    let mut out = Vec::new();
    let Some(z) = nodes.get(zoom as usize) else { return out };
    let ancestors = path(nodes, zoom);
    let n_anc = ancestors.len() as i32 - 1;
    for (i, &a) in ancestors.iter().take(ancestors.len() - 1).enumerate() {
        let figures = nodes[a as usize].figures();
        out.push(Placed { node: Some(a), row: i as i32 - n_anc, x: 0.0, w: 1.0, figures });
    }
    let scale = if z.weight() == 0 { 0.0 } else { 1.0 / z.weight() as f64 };
    let mut stack = vec![(zoom, 0.0f64, 0i32)];
    while let Some((id, x, row)) = stack.pop() {
        let node = &nodes[id as usize];
        // The zoomed node spans the width even when it weighs nothing.
        let w = if id == zoom && z.weight() == 0 { 1.0 } else { node.weight() as f64 * scale };
        out.push(Placed { node: Some(id), row, x, w, figures: node.figures() });
        let mut cx = x;
        let mut merged =
            Placed { node: None, row: row + 1, x: 0.0, w: 0.0, figures: N::Figures::default() };
        for &c in node.children() {
            let child = &nodes[c as usize];
            let cw = child.weight() as f64 * scale;
            if cw <= 0.0 {
                continue;
            }
            if cw < min_w {
                if merged.w == 0.0 {
                    merged.x = cx;
                }
                merged.w += cw;
                N::merge(&mut merged.figures, child.figures());
            } else {
                stack.push((c, cx, row + 1));
            }
            cx += cw;
        }
        if merged.w > 0.0 {
            out.push(merged);
        }
    }
    out.sort_by(|a, b| a.row.cmp(&b.row).then(a.x.total_cmp(&b.x)));
    out
}

/// A rectangle of a layout in rows.
pub(crate) trait RowRect {
    /// (row, left edge, width).
    fn place(&self) -> (i32, f64, f64);
}

/// The rectangle under point (`x`, `row`) among `rects` sorted by row then x: two binary
/// searches for the row, one for the x.
pub(crate) fn row_hit<R: RowRect>(rects: &[R], x: f64, row: i32) -> Option<&R> {
    let start = rects.partition_point(|r| r.place().0 < row);
    let end = rects.partition_point(|r| r.place().0 <= row);
    let row_rects = &rects[start..end];
    let i = row_rects.partition_point(|r| r.place().1 + r.place().2 <= x);
    row_rects.get(i).filter(|r| {
        let (_, rx, rw) = r.place();
        rx <= x && x < rx + rw
    })
}
