//! Compare mode's delta table: memory per call site (innermost function and file) in the
//! base and the head, biggest absolute change first (`memlens_analysis::diff_sites`).

use leptos::prelude::*;

use crate::compare_model::{delta_text, CompareData};
use crate::panel::PanelHead;
use crate::{units, ByPtr};

/// Rows shown; the rest are summarised in one line.
const MAX_ROWS: usize = 200;

#[component]
pub fn DeltaTable(data: Memo<Result<ByPtr<CompareData>, String>>) -> impl IntoView {
    let rows = move || {
        let d = data.get().ok()?;
        let sites = &d.0.sites;
        let body = sites
            .iter()
            .take(MAX_ROWS)
            .map(|s| {
                let class = match s.delta() {
                    d if d > 0 => "num delta-up",
                    d if d < 0 => "num delta-down",
                    _ => "num",
                };
                let file = s.file.rsplit('/').next().unwrap_or(&s.file).to_string();
                view! {
                    <tr>
                        <td class="fn">{s.function.clone()}</td>
                        <td class="file" title=s.file.clone()>{file}</td>
                        <td class="num">{units::bytes(s.base.bytes)}</td>
                        <td class="num">{units::bytes(s.head.bytes)}</td>
                        <td class=class>{delta_text(s.base.bytes, s.head.bytes)}</td>
                    </tr>
                }
            })
            .collect_view();
        let more = (sites.len() > MAX_ROWS).then(|| {
            view! {
                <tr>
                    <td colspan="5" class="more">
                        {format!("… {} more call sites with smaller changes", sites.len() - MAX_ROWS)}
                    </td>
                </tr>
            }
        });
        Some(view! { {body} {more} })
    };
    view! {
        <section class="panel" aria-label="Change by call site">
            <PanelHead title="Change by call site">
                <span class="panel-note">
                    "Memory by innermost function and file, biggest change first"
                </span>
            </PanelHead>
            <div class="table-scroll">
                <table class="data-table" id="delta-table">
                    <thead>
                        <tr>
                            <th>"Function"</th>
                            <th>"File"</th>
                            <th class="num">"Base"</th>
                            <th class="num">"Head"</th>
                            <th class="num">"Change"</th>
                        </tr>
                    </thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
        </section>
    }
}
