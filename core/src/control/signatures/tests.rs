use super::*;

fn text(network: u64, canary: bool, message: &str) -> ReportText {
    ReportText {
        client: network,
        network,
        canary,
        kind: "uncaught".into(),
        message: Some(message.into()),
        stack: None,
    }
}

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

#[test]
fn normalisation_strips_values_and_keeps_words() {
    for (message, expected) in [
        ("", ""),
        ("  Script   error. ", "Script error."),
        (
            "Cannot read properties of undefined (reading 'price')",
            "Cannot read properties of undefined (reading 'price')",
        ),
        ("Expected 3 items, got 17", "Expected <n> items, got <n>"),
        ("timeout after 1.5s", "timeout after <n>.<n>s"),
        (
            "order 550e8400-e29b-41d4-a716-446655440000 not found",
            "order <id> not found",
        ),
        (
            "order 550E8400-E29B-41D4-A716-446655440000: gone",
            "order <id>: gone",
        ),
        ("bad pointer 0x7ffe1234", "bad pointer <hex>"),
        ("hash deadbeef42 mismatch", "hash <hex> mismatch"),
        // Eight letters a-f with no digit are a word, not hex.
        ("facade", "facade"),
        ("token aB3xY9qZ0pL2mN7w rejected", "token <id> rejected"),
        (
            "failed to fetch https://cdn.example.com/a/b.js?v=12#x",
            "failed to fetch <url>",
        ),
        ("at f (https://x.test/sdk.js:10:42)", "at f (<url>)"),
        ("load error:http://x/y", "load error:<url>"),
        ("app.js:12:5 boom", "app.js boom"),
        ("line 12 column 5", "line <n> column <n>"),
        ("user_12345 failed", "user_<n> failed"),
        ("écrire « 42 » impossible", "écrire « <n> » impossible"),
        (
            "<img src=x onerror=alert(1)>",
            "<img src=x onerror=alert(<n>)>",
        ),
    ] {
        assert_eq!(normalise(message), expected, "{message:?}");
    }
    // One error thrown with other values, pages, positions: one signature.
    let key = SignatureKey::derive(b"k");
    let a = key.sign(
        "uncaught",
        &normalise("Order 17 failed at https://a.test/x.js:1:2"),
    );
    let b = key.sign(
        "uncaught",
        &normalise("Order 9042 failed at https://b.test/y.js:88:9"),
    );
    assert_eq!(a, b);
}

#[test]
fn the_keyed_hash_is_stable_and_separated_by_key_and_kind() {
    let key = SignatureKey::derive(b"secret");
    // Stable across builds and restarts: a fixed value for a fixed secret.
    assert_eq!(
        key.sign("uncaught", "boom"),
        SignatureKey::derive(b"secret").sign("uncaught", "boom")
    );
    // Pinned: a change of the derivation would make every stored signature (and the
    // previous step's stable ones) unrecognisable after a deploy.
    assert_eq!(
        format!("{:016x}", key.sign("uncaught", "boom")),
        "36f95f7cd7cda39d"
    );
    assert_ne!(
        key.sign("uncaught", "boom"),
        SignatureKey::derive(b"other").sign("uncaught", "boom")
    );
    assert_ne!(key.sign("uncaught", "boom"), key.sign("chunk_load", "boom"));
    // The kind and message are separated: ("a", "b c") is not ("a b", "c").
    assert_ne!(key.sign("a", "bc"), key.sign("ab", "c"));
    assert_ne!(key, SignatureKey::default());
    assert_eq!(
        format!("{key:?}"),
        "SignatureKey(..)",
        "the key is never printed"
    );
}

#[test]
fn top_frames_are_found_and_bounded() {
    for (stack, frame) in [
        (
            "TypeError: x\n    at pay (https://x.test/sdk.js:1:2)\n    at y",
            Some("at pay (https://x.test/sdk.js:1:2)"),
        ),
        (
            "pay@https://x.test/sdk.js:1:2\n@debugger eval code:1:1",
            Some("pay@https://x.test/sdk.js:1:2"),
        ),
        (
            "TypeError: x\u{1e}    at pay (x.js:1:2)",
            Some("at pay (x.js:1:2)"),
        ),
        ("no frames here", None),
    ] {
        assert_eq!(top_frame(stack).as_deref(), frame, "{stack:?}");
    }
    let long = format!("at {}", "é".repeat(200));
    let f = top_frame(&long).unwrap();
    assert!(f.len() <= FRAME_MAX_BYTES && long.starts_with(&f));
}

#[test]
fn a_network_counts_once_per_signature_and_adds_at_most_a_few() {
    let key = SignatureKey::derive(b"k");
    let mut s = Signatures::default();
    // One network: the same error from many of its clients counts one client.
    let same: Vec<_> = (0..10)
        .map(|i| ReportText {
            client: 100 + i,
            ..text(1, true, "boom 1")
        })
        .collect();
    s.apply(&same, &key, Some(&v("1.1.0")));
    let view = s.view();
    assert_eq!(view.signatures.len(), 1);
    assert_eq!(
        view.signatures[0].clients,
        PerChannel {
            stable: 0,
            canary: 1
        }
    );
    // Its 2nd and 3rd signatures count; the 4th and later are refused.
    let junk: Vec<_> = (0..20)
        .map(|i| text(1, true, &format!("junk {}", "x".repeat(i))))
        .collect();
    s.apply(&junk, &key, None);
    let view = s.view();
    assert_eq!(view.signatures.len(), SIGNATURES_PER_NETWORK);
    assert_eq!(view.refused.network_cap, 20 - 2);
    // The same signature on the other channel counts there, within the cap.
    s.apply(&[text(1, false, "boom 2")], &key, None);
    assert_eq!(
        s.view()
            .signatures
            .iter()
            .find(|x| x.sample == "boom 1")
            .unwrap()
            .clients,
        PerChannel {
            stable: 1,
            canary: 1
        }
    );
    // Other networks count on.
    s.apply(
        &[text(2, true, "boom 3"), text(3, true, "boom 4")],
        &key,
        None,
    );
    let boom = s
        .view()
        .signatures
        .into_iter()
        .find(|x| x.sample == "boom 1")
        .unwrap();
    assert_eq!(
        boom.clients,
        PerChannel {
            stable: 1,
            canary: 3
        }
    );
    assert_eq!(s.view().canary, Some(v("1.1.0")));
}

#[test]
fn the_view_lists_the_top_fifty_new_first_and_counts_the_rest_as_other() {
    let key = SignatureKey::derive(b"k");
    let mut s = Signatures::default();
    // KEPT + 30 stable signatures, signature i seen by i+1 networks; networks are distinct
    // per (signature, client) so that the cap does not bite.
    let mut network = 0;
    // One canary-only error from two networks (first: past KEPT, a new signature counts
    // in other).
    let mut reports = vec![
        text(1_000_000, true, "new in canary"),
        text(1_000_001, true, "new in canary"),
    ];
    for i in 0..(KEPT + 30) {
        for _ in 0..=(i % 5) {
            network += 1;
            reports.push(text(
                network,
                false,
                &format!("stable error {}", "z".repeat(i)),
            ));
        }
    }
    s.apply(&reports, &key, Some(&v("1.1.0")));
    let view = s.view();
    assert_eq!(view.signatures.len(), SHOWN);
    assert_eq!(view.new_in_canary, 1);
    assert!(view.signatures[0].new && view.signatures[0].sample == "new in canary");
    assert_eq!(view.signatures[0].clients.canary, 2);
    assert!(view.signatures[1..].iter().all(|x| !x.new));
    // Listed ones by clients, most first.
    let totals: Vec<u64> = view.signatures[1..]
        .iter()
        .map(|x| x.clients.stable)
        .collect();
    assert!(totals.windows(2).all(|w| w[0] >= w[1]), "{totals:?}");
    // Every client is listed or in other.
    let listed: u64 = view
        .signatures
        .iter()
        .map(|x| x.clients.stable + x.clients.canary)
        .sum();
    assert_eq!(
        listed + view.other.stable + view.other.canary,
        reports.len() as u64
    );
    assert!(view.other.stable > 0);
    assert_eq!(s.table.len(), KEPT, "kept at most KEPT");
}

#[test]
fn new_means_not_on_stable_in_this_step_or_the_previous_one() {
    let key = SignatureKey::derive(b"k");
    let mut s = Signatures::default();
    let canary = Some(v("1.1.0"));
    // Step 1: stable throws "old"; the canary throws "old" and "fresh".
    s.apply(
        &[
            text(1, false, "old 1"),
            text(2, true, "old 2"),
            text(3, true, "fresh 3"),
        ],
        &key,
        canary.as_ref(),
    );
    let new: Vec<String> = s
        .view()
        .signatures
        .into_iter()
        .filter(|x| x.new)
        .map(|x| x.sample)
        .collect();
    assert_eq!(new, ["fresh 3"]);
    assert_eq!(s.top_new().unwrap().sample, "fresh 3");
    // Step 2: only the canary reports "old": stable's from step 1 still makes it not new.
    s.reset();
    assert_eq!(s.status().current, StepSignatures::default());
    assert_eq!(s.status().previous.unwrap().signatures.len(), 2);
    assert_eq!(
        s.top_new().unwrap().sample,
        "fresh 3",
        "the previous step's, while this one has none"
    );
    s.apply(
        &[text(4, true, "old 4"), text(5, true, "fresh 5")],
        &key,
        canary.as_ref(),
    );
    let view = s.view();
    let old = view
        .signatures
        .iter()
        .find(|x| x.sample == "old 4")
        .unwrap();
    assert!(!old.new, "stable had it in the previous step");
    assert!(
        view.signatures
            .iter()
            .find(|x| x.sample == "fresh 5")
            .unwrap()
            .new
    );
    // A step without errors keeps the previous one as it was.
    s.reset();
    let previous = s.status().previous;
    s.reset();
    assert_eq!(s.status().previous, previous);
    // Step 4 (after one without errors): the previous step (2) had no stable "old": new.
    s.apply(&[text(6, true, "old 6")], &key, canary.as_ref());
    assert!(s.view().signatures[0].new);
    // Stable reporting it in this step withdraws it.
    s.apply(&[text(7, false, "old 7")], &key, canary.as_ref());
    assert!(!s.view().signatures[0].new);
    assert_eq!(
        s.top_new().unwrap().sample,
        "fresh 5",
        "the previous step's"
    );
}

#[test]
fn what_is_stored_restores_the_same_signatures() {
    let key = SignatureKey::derive(b"k");
    let mut live = Signatures::default();
    let mut rows: HashMap<u64, Entry> = HashMap::new();
    let mut networks = Vec::new();
    let mut totals = SignatureTotals::default();
    let mut previous = None;
    let mut save =
        |s: &mut Signatures, rows: &mut HashMap<u64, Entry>, networks: &mut Vec<NetworkRow>| {
            let w = s.take_changes();
            if w.reset {
                rows.clear();
                networks.clear();
            }
            if w.previous.is_some() {
                previous = w.previous.clone();
            }
            rows.extend(w.signatures);
            networks.extend(w.networks);
            if let Some(t) = w.totals {
                totals = t;
            }
            (previous.clone(), totals.clone())
        };
    let mut stack = text(9, true, "with stack");
    stack.stack = Some("Error\n    at f (https://x.test/a.js:1:2)".into());
    live.apply(
        &[text(1, false, "a 1"), text(2, true, "b 2"), stack],
        &key,
        Some(&v("1.1.0")),
    );
    save(&mut live, &mut rows, &mut networks);
    live.reset();
    live.apply(
        &[text(1, true, "a 1"), text(3, true, "c 3")],
        &key,
        Some(&v("1.1.0")),
    );
    let junk: Vec<_> = (0..6)
        .map(|i| text(3, true, &format!("junk {}", "q".repeat(i))))
        .collect();
    live.apply(&junk, &key, None);
    let (previous, totals) = save(&mut live, &mut rows, &mut networks);
    let restored = Signatures::restore(
        rows.clone().into_iter().collect(),
        networks.clone(),
        totals,
        previous,
    );
    assert_eq!(restored, live);
    assert_eq!(restored.status(), live.status());
    assert_eq!(restored.view().refused.network_cap, 6 - 2);
    // The per-network cap holds across the restart: network 3 adds nothing more.
    let mut after = restored;
    after.apply(&[text(3, true, "yet another")], &key, None);
    assert_eq!(after.view().refused.network_cap, 6 - 1);
    // Nothing changed since the last save: nothing to write.
    assert_eq!(live.take_changes(), SignatureWrites::default());
}
