//! Request bodies of the operations routes, read chunk by chunk with a cap
//! (`canary_core::ops::body`): past it the answer is 413 and nothing more is read, whatever
//! `Content-Length` says and whether or not the body is chunked (`Request::text()` would
//! read all of it first).

use worker::js_sys::{Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::ReadableStreamDefaultReader;
use worker::Request;

use super::Failure;
use canary_core::error::EdgeError;
use canary_core::ops::body::{CappedBody, TooLarge};

/// The body as text, at most `max` bytes; `what` names the request in the 413.
pub(super) async fn read(req: &Request, max: usize, what: &str) -> Result<String, Failure> {
    let too_large = |_: TooLarge| -> Failure {
        EdgeError::TooLarge(format!("{what} is limited to {} KiB", max / 1024)).into()
    };
    let length = req.headers().get("content-length").ok().flatten();
    let mut body = CappedBody::new(max, length.as_deref()).map_err(too_large)?;
    let Some(stream) = req.inner().body() else {
        return Ok(String::new());
    };
    let reader: ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(js_error)?;
        let done = Reflect::get(&chunk, &JsValue::from_str("done"))
            .map_err(js_error)?
            .as_bool()
            .unwrap_or(true);
        if done {
            break;
        }
        let value = Reflect::get(&chunk, &JsValue::from_str("value")).map_err(js_error)?;
        let Ok(bytes) = value.dyn_into::<Uint8Array>() else {
            return Err(EdgeError::BadRequest(format!("{what}: a body chunk is not bytes")).into());
        };
        // A chunk over the cap by itself is not copied in to be refused.
        let pushed = if bytes.length() as usize > max {
            Err(TooLarge)
        } else {
            body.push(&bytes.to_vec())
        };
        if let Err(e) = pushed {
            // Released, not cancelled: a cancelled upload resets the connection before the
            // client can read the 413 (as js/index.js does for reports).
            reader.release_lock();
            return Err(too_large(e));
        }
    }
    Ok(body.into_text())
}

fn js_error(e: JsValue) -> Failure {
    Failure::Runtime(worker::Error::from(e))
}
