//! A Rust library that allocates through two functions of its own: `make_table` (kept out of
//! line) and `fill_rows` (inlined into it), the way a Rust extension's code reaches the
//! allocator. The lines carrying `// TAG` comments are the ones the test expects.

/// Allocates `rows` boxed rows of `width` bytes and leaks them; returns how many bytes.
#[no_mangle]
pub extern "C" fn memlens_rust_make_table(rows: usize, width: usize) -> usize {
    let table = make_table(rows, width); // MAKE_TABLE_CALL
    let bytes = table.iter().map(|r| r.len()).sum();
    std::mem::forget(table);
    bytes
}

#[inline(never)]
fn make_table(rows: usize, width: usize) -> Vec<Box<[u8]>> {
    let mut table = Vec::with_capacity(rows);
    fill_rows(&mut table, rows, width); // FILL_ROWS_CALL
    table
}

#[inline(always)]
fn fill_rows(table: &mut Vec<Box<[u8]>>, rows: usize, width: usize) {
    for i in 0..rows {
        table.push(vec![i as u8; width].into_boxed_slice()); // ALLOCATE_ROW
    }
}
