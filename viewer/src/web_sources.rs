//! Where the worker reads recordings from: a `Blob` (a dropped or picked `File`, or bytes a
//! report page holds) sliced and read with `FileReaderSync`, and a URL read with synchronous
//! `XMLHttpRequest`s carrying a `Range` header (both are allowed in workers, and analyses
//! read synchronously). Opening and following a URL start with an asynchronous probe
//! ([`probe`]): it finds the file's size and whether the server honours ranges, and when it
//! does not, downloads the whole body once with progress.

use send_wrapper::SendWrapper;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::cached_source::Fetch;

/// A message for a JS exception or value.
pub fn js_error(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

/// A `Blob` read in slices. (`SendWrapper`: the format's sources must be `Send + Sync`; the
/// worker is single-threaded, so the blob is only ever touched from the thread that made it.)
pub struct BlobFetch {
    blob: SendWrapper<web_sys::Blob>,
}

impl BlobFetch {
    pub fn new(blob: web_sys::Blob) -> Self {
        BlobFetch { blob: SendWrapper::new(blob) }
    }

    pub fn size(&self) -> u64 {
        self.blob.size() as u64
    }
}

impl Fetch for BlobFetch {
    fn fetch(&self, offset: u64, len: u64) -> Result<Vec<u8>, String> {
        let end = offset.saturating_add(len);
        let slice = self
            .blob
            .slice_with_f64_and_f64(offset as f64, end as f64)
            .map_err(|e| format!("the file cannot be read ({})", js_error(&e)))?;
        let reader = web_sys::FileReaderSync::new().map_err(|e| js_error(&e))?;
        let buffer = reader.read_as_array_buffer(&slice).map_err(|e| {
            format!("the file cannot be read any more ({}); was it changed or moved?", js_error(&e))
        })?;
        Ok(js_sys::Uint8Array::new(&buffer).to_vec())
    }
}

/// A URL read with range requests.
pub struct XhrFetch {
    url: String,
}

impl XhrFetch {
    pub fn new(url: String) -> Self {
        XhrFetch { url }
    }
}

impl Fetch for XhrFetch {
    fn fetch(&self, offset: u64, len: u64) -> Result<Vec<u8>, String> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let fail = |what: String| format!("Could not fetch {}: {what}", self.url);
        let xhr = web_sys::XmlHttpRequest::new().map_err(|e| fail(js_error(&e)))?;
        xhr.open_with_async("GET", &self.url, false).map_err(|e| fail(js_error(&e)))?;
        xhr.set_response_type(web_sys::XmlHttpRequestResponseType::Arraybuffer);
        let range = format!("bytes={offset}-{}", offset + len - 1);
        xhr.set_request_header("Range", &range).map_err(|e| fail(js_error(&e)))?;
        xhr.send().map_err(|e| fail(format!("network error ({})", js_error(&e))))?;
        let status = xhr.status().map_err(|e| fail(js_error(&e)))?;
        let body = || -> Result<Vec<u8>, String> {
            let buffer = xhr.response().map_err(|e| fail(js_error(&e)))?;
            Ok(js_sys::Uint8Array::new(&buffer).to_vec())
        };
        match status {
            206 => body(),
            // The server sent the whole file after all: keep the part asked for.
            200 => {
                let all = body()?;
                let start = (offset as usize).min(all.len());
                Ok(all[start..(start + len as usize).min(all.len())].to_vec())
            }
            416 => Ok(Vec::new()),
            0 => Err(fail("network error".into())),
            s => Err(fail(format!("HTTP {s} {}", xhr.status_text().unwrap_or_default()))),
        }
    }
}

/// `Content-Range: bytes START-END/TOTAL` (or `bytes */TOTAL`): the total size.
pub fn content_range_total(header: &str) -> Option<u64> {
    let rest = header.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    if range != "*" {
        let (a, b) = range.split_once('-')?;
        let (a, b) = (a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?);
        if b < a {
            return None;
        }
    }
    total.trim().parse().ok()
}

/// What a probe of a URL found.
pub enum Probe {
    /// The server honours ranges; the file is `total` bytes.
    Ranged { total: u64 },
    /// The server sent the whole file.
    Whole(Vec<u8>),
}

/// Asks for the byte at `from`, bypassing the browser's cache (a recording being written
/// changes): [`Probe::Ranged`] with the file's size when the server answers 206 or 416,
/// else the whole body, read with `progress(done, total)` calls.
pub async fn probe(
    scope: &web_sys::WorkerGlobalScope,
    url: &str,
    from: u64,
    progress: impl Fn(u64, Option<u64>),
) -> Result<Probe, String> {
    let fail = |what: String| format!("Could not fetch {url}: {what}");
    let init = web_sys::RequestInit::new();
    init.set_cache(web_sys::RequestCache::NoStore);
    let headers = web_sys::Headers::new().map_err(|e| fail(js_error(&e)))?;
    headers.set("Range", &format!("bytes={from}-{from}")).map_err(|e| fail(js_error(&e)))?;
    init.set_headers(&headers);
    let response = JsFuture::from(scope.fetch_with_str_and_init(url, &init))
        .await
        .map_err(|e| fail(format!("network error ({})", js_error(&e))))?;
    let response: web_sys::Response =
        response.dyn_into().map_err(|_| fail("not a response".into()))?;
    let header = |name: &str| response.headers().get(name).ok().flatten();
    match response.status() {
        206 | 416 => {
            let total = header("content-range").as_deref().and_then(content_range_total);
            let total = total.ok_or_else(|| fail("a range answer without its size".into()))?;
            Ok(Probe::Ranged { total })
        }
        200 => {
            let total = header("content-length").and_then(|v| v.parse::<u64>().ok());
            let body = response.body().ok_or_else(|| fail("empty response".into()))?;
            read_stream(body, total, progress)
                .await
                .map(Probe::Whole)
                .map_err(|e| fail(format!("the download failed ({})", js_error(&e))))
        }
        status => {
            let text = response.status_text();
            let text = if text.is_empty() { String::new() } else { format!(" {text}") };
            Err(fail(format!("HTTP {status}{text}")))
        }
    }
}

/// Reads a whole `ReadableStream` of bytes, reporting progress.
async fn read_stream(
    stream: web_sys::ReadableStream,
    total: Option<u64>,
    progress: impl Fn(u64, Option<u64>),
) -> Result<Vec<u8>, JsValue> {
    let reader: web_sys::ReadableStreamDefaultReader = stream.get_reader().dyn_into()?;
    let mut out = Vec::with_capacity(total.unwrap_or(0).min(1 << 30) as usize);
    loop {
        let chunk = JsFuture::from(reader.read()).await?;
        if js_sys::Reflect::get(&chunk, &"done".into())?.as_bool().unwrap_or(true) {
            break;
        }
        let value: js_sys::Uint8Array =
            js_sys::Reflect::get(&chunk, &"value".into())?.dyn_into()?;
        let start = out.len();
        out.resize(start + value.length() as usize, 0);
        value.copy_to(&mut out[start..]);
        progress(out.len() as u64, total);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::content_range_total;

    #[test]
    fn content_range_gives_the_total() {
        assert_eq!(content_range_total("bytes 0-65535/1234567"), Some(1_234_567));
        assert_eq!(content_range_total("bytes */500"), Some(500));
        assert_eq!(content_range_total(" bytes 10-20/30 "), Some(30));
        assert_eq!(content_range_total("bytes 20-10/30"), None);
        assert_eq!(content_range_total("bytes 0-10/*"), None);
        assert_eq!(content_range_total("items 0-10/30"), None);
        assert_eq!(content_range_total(""), None);
    }
}
