//! The raw-head framing check (`framing::check_head`), the head-end detector
//! (`framing::head_complete`) and `framing::request_id_of_head`, over any bytes.
//!
//! Properties: no panic; `head_complete` searched incrementally (as the gateway does, chunk by
//! chunk) answers as a search of the whole buffer does; the gateway only calls `check_head` once
//! `head_complete` is true, so a head `check_head` accepts must be one `head_complete` sees as
//! complete, and a buffer `head_complete` calls complete is never "incomplete" to `check_head`;
//! an accepted head has exactly one framing, consistent with its headers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_rules::framing::{check_head, head_complete, request_id_of_head, BodyFraming, HeaderLimits};

fuzz_target!(|data: &[u8]| {
    let complete = head_complete(data, 0);

    // Incremental search: for every split where the first part was not complete, looking at the
    // whole buffer from there gives the same answer as looking at it all.
    for k in 1..data.len().min(64) {
        if !head_complete(&data[..k], 0) {
            assert_eq!(head_complete(data, k), complete, "incremental head_complete differs at {k}");
        }
    }
    let _ = head_complete(data, data.len() + 5);

    for limits in [HeaderLimits::default(), HeaderLimits { max_count: 3, max_bytes: 64 }] {
        let verdict = check_head(data, limits);
        if complete {
            if let Err(d) = &verdict {
                assert_ne!(d.reason, "incomplete_request_head", "head_complete and httparse disagree");
            }
        }
        if let Ok(framing) = verdict {
            assert!(complete, "check_head accepted a head head_complete does not see the end of");
            let text = String::from_utf8_lossy(data).to_ascii_lowercase();
            match framing {
                BodyFraming::Chunked => assert!(text.contains("transfer-encoding")),
                BodyFraming::Length(_) => assert!(text.contains("content-length")),
                BodyFraming::None => {}
            }
        }
    }
    if let Some(id) = request_id_of_head(data) {
        assert!(portcullis_rules::request_id::is_well_formed(id.as_bytes()));
    }
});
