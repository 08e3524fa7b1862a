//! An asset request as a plan: request facts in, what to load and how to answer out, with
//! no I/O. The worker's entry module (JS) does the awaits the plan names (KV, the edge
//! cache, R2, the batches to the control plane) and calls back into [`Edge`] only with
//! what it found. One synchronous call decides a request; a second records what was
//! served (by the handle of the tally the plan held, `serve/held.rs`: numbers only).
//! Everything else about the request is decided here.
//!
//! [`Edge`] is the per-isolate state: settings, the routing keys, the rollout configs
//! and the pending health counts (one outbox: loads, and the reports and boot signals of
//! `report.rs`, sent by the entry module's timer, [`Edge::flush`]). The
//! operations module (`src/edge`) builds its isolate around one too, for its status.

use std::rc::Rc;

use crate::config::origins::load_counts;
use crate::config::{kv_key, BundleName, Version, Weight};
use crate::edge::decide::{Channel, ClientFacts, Decision, PreparedRollout, Router};
use crate::edge::http::{
    content_type_for, floating_cache_control, pinned_cache_control, HeaderLines,
};
use crate::edge::miss::{judge_miss, Listing, ManifestState, Manifests, MissRule};
use crate::edge::override_token::{OverrideKey, OVERRIDE_HEADER};
use crate::edge::rollouts::RolloutCache;
use crate::edge::route::{self, AssetRoute, Route, RouteError};
use crate::edge::text;
use crate::edge::user_key::UserKeySigner;
use crate::error::EdgeError;
use crate::health::batching::{Outbox, Tally};
use crate::health::counts::Batch;
use crate::health::counts::Signal;
use crate::keyed::KeyedHash;
use crate::kv::KvRead;
use crate::log::LogLine;
use crate::manifest::{manifest_key, version_prefix};
use crate::settings::Settings;

/// The operations route of error reports and boot signals (`/__canary/report`).
pub const REPORT_ROUTE: &str = "report";

/// Headers a browser script may read on a cross-origin asset response.
pub const EXPOSED_HEADERS: &str = "x-cohort, x-canary-channel, x-canary-version, x-canary-fallback";

/// How long the edge cache may keep a file of a version: its bytes never change.
pub const STORED_MAX_AGE: u32 = 31_536_000;

/// What the plan needs of a request, read by the entry module in one go.
#[derive(Debug, Clone, Copy)]
pub struct AssetRequest<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub cookie: Option<&'a str>,
    pub override_token: Option<&'a str>,
    /// `CF-Connecting-IP`: the client's network, for the per-network cap on evidence.
    pub client_ip: Option<&'a str>,
    /// A user key and the merchant's signature of it (`user_key`), when both were sent.
    pub signed_user_key: Option<(&'a str, &'a str)>,
    /// `Referer`: the page that loaded the script, for `health.origins`.
    pub referer: Option<&'a str>,
    pub now_ms: f64,
    /// This request has just read the config ([`Step::ReadConfig`]): use what it read,
    /// however short the TTL.
    pub config_read: bool,
    /// This request has just read a version's manifest ([`Step::ReadManifest`]): what
    /// [`Edge::record_manifest`] made of it.
    pub manifest: Option<&'a ManifestState>,
}

/// One file of one version: where the edge cache keeps it and where R2 has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Load {
    /// The edge cache key: the file's pinned URL, shared by every cohort and by the
    /// floating URL, so the split never lowers the hit rate and a weight change needs no
    /// purge.
    pub cache_key: String,
    pub object_key: String,
}

/// How to serve an asset once its bytes are found.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetPlan {
    pub bundle: BundleName,
    /// HEAD: metadata only, nothing cached.
    pub head: bool,
    /// The version routed to, and where its file is.
    pub version: Version,
    pub load: Load,
    /// For a floating canary request: stable's copy of the file, served when the canary's
    /// is missing or R2 fails for it.
    pub fallback: Option<(Version, Load)>,
    /// `Content-Type` when the object has none.
    pub default_content_type: &'static str,
    /// Response headers of this request, besides [`Edge::static_headers`], `content-type`,
    /// `etag`, `server-timing`, and those a fallback changes (`x-canary-version`,
    /// `x-canary-channel`, `x-canary-fallback`).
    pub headers: HeaderLines,
    /// The channel header of the routed version (absent for a pinned old version).
    pub channel: Option<Channel>,
    /// What to count once the response is sure: [`Edge::hold`] keeps it across the entry's
    /// awaits, [`Edge::served`] counts it; `None` for what does not feed health (HEAD,
    /// pinned URLs, overrides).
    pub tally: Option<TallyFacts>,
    /// The bundle's config serves a canary (a cohort is on it): while it does, the entry
    /// module asks the control plane for the config's revision now and then (under
    /// `ctx.waitUntil`), so that a rollback reaches this isolate without waiting for KV
    /// (see [`Edge::pushed_config`]).
    pub serving_canary: bool,
}

/// The next thing the entry module does for a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// `/__canary/...`: the operations module answers.
    Ops,
    /// `POST /__canary/report`: read the body (at most `MAX_REPORT_BYTES`) and plan it with
    /// [`Edge::plan_report`].
    Report,
    /// The bundle's config is not fresh in this isolate: read `kv_key`, give the outcome
    /// to [`Edge::record_config`], then ask again.
    ReadConfig {
        bundle: BundleName,
        kv_key: String,
        timeout_ms: u64,
    },
    /// The cookie did not decide: ask again with the request's other identities (user key,
    /// fingerprints, address), read only now since most requests carry a valid cookie.
    NeedIdentity,
    /// A pinned version the config does not name is served only once published, and this
    /// isolate has not read its manifest: read `key` from R2, give the outcome to
    /// [`Edge::record_manifest`], then ask again with what it answered
    /// ([`AssetRequest::manifest`]). Checked before the edge cache, which may hold a copy an
    /// override fetched.
    ReadManifest {
        bundle: BundleName,
        version: Version,
        key: String,
    },
    /// Answer with this error.
    Fail(EdgeError),
    /// Load and serve.
    Serve(Box<AssetPlan>),
}

/// What was served for a floating request, for [`Edge::served`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// The routed version's file.
    AsRouted,
    /// Stable's file, because the canary's failed: R2 failed for it, or a file the canary
    /// published is missing. A load and an error of the canary's.
    CountedFallback,
    /// Stable's file, because the canary never had it (not in its manifest, or no
    /// manifest): says nothing about the canary, so nothing is counted.
    PlainFallback,
    /// Nothing: the file is missing from both versions, or R2 failed for the only one
    /// there is. Counts nothing: a request for a path no version has is a scanner's, not
    /// a client's.
    NotServed,
}

/// Why the load of an object failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    Absent,
    Failed(String),
}

/// The next thing the entry module does about a floating canary request whose file could
/// not be loaded, once stable's copy was found ([`Edge::canary_miss`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissStep {
    /// The rule needs the canary's manifest: read `key` from R2, give the outcome to
    /// [`Edge::record_manifest`], then ask again with what it answered.
    ReadManifest { key: String },
    /// Whether the miss counts against the canary ([`crate::edge::miss`]).
    Judged(MissRule),
}

/// Per-isolate state of the asset path.
#[derive(Debug)]
pub struct Edge {
    pub settings: Settings,
    pub router: Router,
    rollouts: RolloutCache,
    outbox: Outbox,
    /// Keys the client's network before it leaves the isolate.
    network_key: KeyedHash,
    user_keys: Option<UserKeySigner>,
    override_key: Option<OverrideKey>,
    /// Version manifests read in this isolate.
    manifests: Manifests,
    /// Floating requests' tallies between their plan and their response.
    held: Held<TallyFacts>,
    /// Batches that fell due while counting, for the next [`Edge::flush`].
    ready: Vec<(BundleName, Batch)>,
    floating_cache_control: String,
    pinned_cache_control: String,
    stored_cache_control: String,
}

impl Edge {
    pub fn new(settings: Settings) -> Self {
        Self {
            router: Router::new(&settings),
            rollouts: RolloutCache::new(settings.config_ttl_ms),
            outbox: Outbox::new(KeyedHash::derive(
                settings.edge_secret().as_bytes(),
                "sketch",
            )),
            network_key: KeyedHash::derive(settings.edge_secret().as_bytes(), "network"),
            user_keys: settings
                .user_key_secret
                .as_deref()
                .map(|s| UserKeySigner::new(s.as_bytes())),
            override_key: settings
                .override_secret
                .as_deref()
                .map(|s| OverrideKey::new(s.as_bytes())),
            manifests: Manifests::default(),
            held: Held::default(),
            ready: Vec::new(),
            floating_cache_control: floating_cache_control(settings.floating_max_age),
            pinned_cache_control: pinned_cache_control(settings.pinned_max_age),
            stored_cache_control: pinned_cache_control(STORED_MAX_AGE),
            settings,
        }
    }

    /// Decides a request as far as the facts at hand allow. `identity`: the identities
    /// besides the cookie (its `cookie_header` is not read: the cookie is `req.cookie`),
    /// once the cookie has failed ([`Step::NeedIdentity`]), or from the start when the
    /// entry read them first (a request without a cookie; a cookie given with them is then
    /// not read); `random` supplies 64 random bits (a new client's id, a random cohort).
    pub fn plan(
        &self,
        req: &AssetRequest<'_>,
        identity: Option<&ClientFacts<'_>>,
        mut random: impl FnMut() -> u64,
    ) -> Step {
        let asset = match route::parse(route::path_of(req.url)) {
            Ok(Route::Asset(asset)) => asset,
            // Reports and boot signals are the count path's, not the operations module's.
            Ok(Route::Ops(op)) if op == REPORT_ROUTE => {
                return match req.method {
                    "POST" => Step::Report,
                    _ => Step::Fail(EdgeError::MethodNotAllowed("POST")),
                }
            }
            Ok(Route::Ops(_)) => return Step::Ops,
            Err(RouteError::NotFound(m)) => return Step::Fail(EdgeError::NotFound(m)),
            Err(RouteError::BadRequest(m)) => return Step::Fail(EdgeError::BadRequest(m)),
        };
        // The console's host serves no bundle: no page there can be anyone's but ours.
        if self.settings.console_host.is_some()
            && self.settings.is_console_host(route::host_of(req.url))
        {
            return Step::Fail(EdgeError::NotFound(
                "this host serves the operator console only, not bundles".into(),
            ));
        }
        // The method as the runtime has it: anything but GET and HEAD is refused here.
        let head = match req.method {
            "GET" => false,
            "HEAD" => true,
            _ => return Step::Fail(EdgeError::MethodNotAllowed("GET, HEAD")),
        };
        let known = if req.config_read {
            self.rollouts.latest(&asset.bundle)
        } else {
            self.config(&asset.bundle, req.now_ms)
        };
        let prepared = match known {
            Some(Ok(prepared)) => prepared,
            Some(Err(e)) => return Step::Fail(e),
            None => {
                return Step::ReadConfig {
                    kv_key: kv_key(&asset.bundle),
                    bundle: asset.bundle,
                    timeout_ms: self.settings.kv_timeout_ms,
                }
            }
        };
        let routed = match &asset.pin {
            Some(pinned) => {
                // A version the config names is public; any other is public once
                // published (its manifest), or to a holder of a signed override for the
                // bundle (QA of an upload before it is published).
                let named = prepared.rollout.stable == *pinned
                    || prepared.rollout.canary.as_ref() == Some(pinned);
                let overridden = if named {
                    None
                } else {
                    self.override_channel(req, &prepared)
                };
                Routed {
                    version: pinned.clone(),
                    channel: prepared.channel_of(pinned),
                    decision: None,
                    overridden,
                    must_be_published: !named && overridden.is_none(),
                }
            }
            None => {
                // Asked again with the identities, the cookie has already failed (that is
                // why they were read): it is scanned once per request, not twice.
                let cookie = req.cookie.filter(|_| identity.is_none());
                let returning = cookie.and_then(|c| {
                    self.router
                        .decide_returning(&prepared, c, (req.now_ms / 1000.0) as u64, &mut random)
                        .map(owned)
                });
                let decision = match (returning, identity) {
                    (Some(d), _) => d,
                    (None, None) => return Step::NeedIdentity,
                    (None, Some(id)) => {
                        // The cookie has just failed: not verified again.
                        let facts = ClientFacts {
                            cookie_header: None,
                            ..*id
                        };
                        owned(self.router.decide(
                            &prepared,
                            &facts,
                            (req.now_ms / 1000.0) as u64,
                            &mut random,
                        ))
                    }
                };
                self.route_floating(req, &prepared, decision)
            }
        };
        if routed.must_be_published {
            if let Err(step) = self.published(req, &asset.bundle, &routed.version) {
                return step;
            }
        }
        let origin = route::origin_of(req.url);
        Step::Serve(Box::new(
            self.asset_plan(req, origin, &asset, &prepared, routed, head),
        ))
    }

    /// Headers every asset response carries, the same for every request: handed to the
    /// entry module once per isolate rather than in every plan.
    pub fn static_headers() -> HeaderLines {
        let mut headers = HeaderLines::default();
        headers.set("access-control-allow-origin", "*");
        headers.set("access-control-expose-headers", EXPOSED_HEADERS);
        headers.set("x-content-type-options", "nosniff");
        headers
    }

    /// `Cache-Control` of the copy kept in the edge cache (which carries no cookie and no
    /// cohort: those are added per response).
    pub fn stored_cache_control(&self) -> &str {
        &self.stored_cache_control
    }

    /// `bundle`'s config while this isolate's copy is younger than `CONFIG_TTL_MS` at
    /// `now_ms`; `None` when KV must be read (`kv_key`, within `KV_TIMEOUT_MS`), the
    /// outcome given to [`Edge::record_config`] or [`Edge::read_config`].
    pub fn config(
        &self,
        bundle: &BundleName,
        now_ms: f64,
    ) -> Option<Result<Rc<PreparedRollout>, EdgeError>> {
        self.rollouts.fresh(bundle, now_ms)
    }

    /// Records a KV read of `bundle`'s config, issued at `issued_ms`; the log line says
    /// when the config served is the last good one rather than what KV holds.
    pub fn record_config(
        &mut self,
        bundle: &BundleName,
        read: KvRead,
        issued_ms: f64,
    ) -> Option<LogLine> {
        let (_, staleness) = self.rollouts.record(&self.router, bundle, read, issued_ms);
        Some(LogLine::for_staleness(bundle, staleness?))
    }

    /// [`Edge::record_config`], with the config the read leaves for the request that made
    /// it, however short the TTL: the last good one on a fault, a newer read's when one was
    /// recorded meanwhile. (`record_config` does not call this: the routing module would
    /// carry the unused answer, some 260 bytes.)
    pub fn read_config(
        &mut self,
        bundle: &BundleName,
        read: KvRead,
        issued_ms: f64,
    ) -> (Result<Rc<PreparedRollout>, EdgeError>, Option<LogLine>) {
        let (answer, staleness) = self.rollouts.record(&self.router, bundle, read, issued_ms);
        let log = staleness.map(|s| LogLine::for_staleness(bundle, s));
        (answer, log)
    }

    /// Records a config the control plane pushed (on the answer to a health batch or to a
    /// revision check): `text` exactly as KV holds it, at `revision`. Taken only above the
    /// highest revision this isolate has seen for the bundle, so that a push never undoes a
    /// newer config nor an operator's raw write read since (the order:
    /// [`rollouts`](crate::edge::rollouts)); then served as if just read from KV. Returns whether
    /// it was taken (a text that does not parse is not: the control plane pushes only the
    /// configs it validated, so nothing is logged).
    pub fn pushed_config(
        &mut self,
        bundle: &BundleName,
        revision: u64,
        text: &str,
        now_ms: f64,
    ) -> bool {
        self.rollouts
            .push(&self.router, bundle, revision, text, now_ms)
            .unwrap_or(false)
    }

    /// Forgets this isolate's copy of `bundle`'s config (after an operator's write), so
    /// the next request reads KV; the last good config is kept for KV's faults.
    pub fn forget_config(&mut self, bundle: &BundleName) {
        self.rollouts.invalidate(bundle);
    }

    /// The key that signs override tokens (`OVERRIDE_SECRET`), when overrides are on.
    pub fn override_key(&self) -> Option<&OverrideKey> {
        self.override_key.as_ref()
    }

    /// The channel of a valid override for `prepared`'s bundle its holder sent (`header`,
    /// else the cookie named in the `cookie` header), and the client id it counts as.
    pub fn override_holder(
        &self,
        prepared: &PreparedRollout,
        header: Option<&str>,
        cookie: Option<&str>,
        now_ms: f64,
    ) -> Option<(Channel, u64)> {
        self.verified_override(prepared, header, cookie, now_ms)
            .map(|(channel, token)| (channel, OverrideKey::holder_id(token)))
    }

    /// This edge with its tallies' handles starting at `start` (e.g. a random value, so
    /// that a handle of an edge before a restart names nothing here: `serve/held.rs`).
    pub fn with_handles_from(mut self, start: u64) -> Self {
        self.held = Held::starting_at(start);
        self
    }

    /// Keeps a plan's tally across the entry's awaits; the handle to give [`Edge::served`].
    pub fn hold(&mut self, tally: TallyFacts, now_ms: f64) -> u64 {
        self.held.hold(tally, now_ms)
    }

    /// Counts the floating request held as `handle` ([`Edge::hold`]) as `outcome` says: a
    /// load of the channel it was routed to, and after a [`Served::CountedFallback`] an
    /// error of the canary's too (the origin failed it). [`Served::PlainFallback`] and
    /// [`Served::NotServed`] count nothing, and give the handle back all the same. Returns
    /// when the outbox's next batch falls due ([`Edge::next_flush_ms`]; `now_ms` when one
    /// already has): batches leave through [`Edge::flush`] only. A handle not held counts
    /// nothing.
    pub fn served(&mut self, handle: u64, outcome: Served, now_ms: f64) -> Option<f64> {
        let tally = self.held.take(handle);
        // A load, and after a counted fallback a failure too.
        let signals: &[Signal] = match outcome {
            Served::AsRouted => &[Signal::Load],
            Served::CountedFallback => &[Signal::Load, Signal::Failure],
            Served::PlainFallback | Served::NotServed => &[],
        };
        if let Some(tally) = tally {
            for &signal in signals {
                // A fallback happens only to canary-routed requests: both count on the canary.
                self.count(&tally, signal, None, None, now_ms);
            }
        }
        self.next_due(now_ms)
    }

    /// When the next batch falls due: now if one is ready, else the outbox's next.
    fn next_due(&self, now_ms: f64) -> Option<f64> {
        if self.ready.is_empty() {
            self.next_flush_ms()
        } else {
            Some(now_ms)
        }
    }

    /// One signal of a tallied client (with an error report's kind, message and stack)
    /// into the outbox; the batches it makes due wait in `ready` for [`Edge::flush`].
    fn count(
        &mut self,
        parsed: &TallyFacts,
        signal: Signal,
        boot_ms: Option<u32>,
        text: Option<(String, Option<String>, Option<String>)>,
        now_ms: f64,
    ) {
        let tally = Tally {
            bundle: &parsed.bundle,
            stable: &parsed.stable,
            canary: parsed.canary.as_ref(),
            weight: parsed.weight,
            on_canary: parsed.on_canary,
            client: parsed.client,
            network: parsed.network,
            signal,
            boot_ms,
        };
        let due = self
            .outbox
            .record_text(tally, text, self.settings.flush, now_ms);
        self.ready
            .extend(due.into_iter().map(|b| (parsed.bundle.clone(), b)));
    }

    /// The batches due at `now_ms` (the entry module's timer: counts never wait for a next
    /// request that may not come).
    pub fn flush(&mut self, now_ms: f64) -> Vec<(BundleName, Batch)> {
        let mut batches = std::mem::take(&mut self.ready);
        batches.extend(self.outbox.take_due(self.settings.flush, now_ms));
        batches
    }

    /// When the outbox's next batch falls due, if it holds any counts.
    pub fn next_flush_ms(&self) -> Option<f64> {
        self.outbox.next_due_ms(self.settings.flush)
    }

    /// The error for a file that could not be loaded (after any fallback).
    pub fn miss_error(object_key: &str, miss: Miss) -> EdgeError {
        match miss {
            Miss::Absent => EdgeError::ObjectMissing(object_key.to_owned()),
            Miss::Failed(detail) => EdgeError::Origin {
                key: object_key.to_owned(),
                detail,
            },
        }
    }

    /// Whether `version` was published (its manifest), as far as this isolate knows: `Ok`
    /// to serve, else the step that reads the manifest or the refusal.
    fn published(
        &self,
        req: &AssetRequest<'_>,
        bundle: &BundleName,
        version: &Version,
    ) -> Result<(), Step> {
        if self.manifests.files(bundle, version).is_some() {
            return Ok(());
        }
        match req.manifest {
            None => Err(Step::ReadManifest {
                key: manifest_key(bundle, version),
                bundle: bundle.clone(),
                version: version.clone(),
            }),
            Some(ManifestState::Missing) => Err(Step::Fail(EdgeError::NotPublished(format!(
                "{bundle}@{version}"
            )))),
            Some(ManifestState::Failed(detail)) => Err(Step::Fail(EdgeError::PublicationUnknown {
                version: format!("{bundle}@{version}"),
                detail: detail.clone(),
            })),
            // Just read and kept (the isolate is single-threaded: nothing dropped it since).
            Some(ManifestState::Known) => Ok(()),
        }
    }

    /// Records a read of `version`'s manifest (R2's answer, as a KV read's); the answer is
    /// what the entry module gives back to [`Edge::plan`] or [`Edge::canary_miss`].
    pub fn record_manifest(
        &mut self,
        bundle: &BundleName,
        version: &Version,
        read: KvRead,
    ) -> ManifestState {
        self.manifests.record(bundle, version, read)
    }

    /// A floating canary request's file could not be loaded (`object_key`; `r2_detail`:
    /// R2's failure, empty when the file is absent) and stable's copy was: whether that
    /// counts against the canary ([`crate::edge::miss`]), once the canary's manifest is
    /// read if the rule needs it (`manifest`: what [`Edge::record_manifest`] answered for
    /// this miss, `None` before).
    pub fn canary_miss(
        &self,
        bundle: &BundleName,
        version: &Version,
        object_key: &str,
        r2_detail: &str,
        manifest: Option<&ManifestState>,
    ) -> MissStep {
        let prefix = version_prefix(bundle, version);
        let path = object_key.strip_prefix(&prefix).unwrap_or(object_key);
        let listing = match (self.manifests.files(bundle, version), manifest) {
            (Some(files), _) => Some(Listing::Files(files)),
            (None, None) => None,
            (None, Some(ManifestState::Missing)) => Some(Listing::NoManifest),
            (None, Some(ManifestState::Failed(detail))) => Some(Listing::Unreadable(detail)),
            // Known but not kept cannot happen (see `published`); never read again in a loop.
            (None, Some(ManifestState::Known)) => {
                Some(Listing::Unreadable("the manifest read was not kept"))
            }
        };
        match judge_miss(r2_detail, path, listing) {
            Some(rule) => MissStep::Judged(rule),
            None => MissStep::ReadManifest {
                key: manifest_key(bundle, version),
            },
        }
    }

    fn route_floating(
        &self,
        req: &AssetRequest<'_>,
        prepared: &PreparedRollout,
        decision: OwnedDecision,
    ) -> Routed {
        // A signed override (QA, probes) picks the channel; the cohort stays as it is.
        let forced = self.override_channel(req, prepared).map(|ch| {
            match (ch, prepared.rollout.canary.as_ref()) {
                (Channel::Canary, Some(canary)) => (Channel::Canary, canary.clone()),
                _ => (Channel::Stable, prepared.rollout.stable.clone()),
            }
        });
        let overridden = forced.as_ref().map(|(ch, _)| *ch);
        let (channel, version) = forced.unwrap_or((decision.channel, decision.version.clone()));
        Routed {
            version,
            channel: Some(channel),
            decision: Some(decision),
            overridden,
            must_be_published: false,
        }
    }

    /// The channel a signed override token grants, from the header or the cookie.
    fn override_channel(
        &self,
        req: &AssetRequest<'_>,
        prepared: &PreparedRollout,
    ) -> Option<Channel> {
        self.verified_override(prepared, req.override_token, req.cookie, req.now_ms)
            .map(|(channel, _)| channel)
    }

    /// The first override token that verifies for `prepared`'s bundle, the header's before
    /// the cookie's, with the channel it grants.
    fn verified_override<'t>(
        &self,
        prepared: &PreparedRollout,
        header: Option<&'t str>,
        cookie: Option<&'t str>,
        now_ms: f64,
    ) -> Option<(Channel, &'t str)> {
        let key = self.override_key.as_ref()?;
        let now = (now_ms / 1000.0) as u64;
        let from_cookie = cookie.and_then(OverrideKey::from_cookie_header);
        [header, from_cookie]
            .into_iter()
            .flatten()
            .find_map(|token| {
                key.verify(
                    token,
                    &prepared.bundle,
                    now,
                    prepared.rollout.overrides_not_before(),
                )
                .map(|channel| (channel, token))
            })
    }

    /// The rate-limit key of a client address's network (an IPv4 address, an IPv6 /48: one
    /// home's or site's many IPv6 addresses share it), keyed so that no address leaves the
    /// isolate. The report limits and the console's login limit use it.
    pub fn network_limit_key(&self, client_ip: Option<&str>) -> String {
        limit_key(self.network_of_address(client_ip))
    }

    /// The keyed network (the evidence unit) of a client address.
    fn network_of_address(&self, client_ip: Option<&str>) -> u64 {
        self.network_key.network(client_ip.unwrap_or(""))
    }

    /// The keyed network a counted load comes from: a user key the merchant signed is a
    /// network of its own (one user); anything else is the client address's network.
    fn network_of(&self, req: &AssetRequest<'_>) -> u64 {
        if let (Some(signer), Some((key, signature))) = (&self.user_keys, req.signed_user_key) {
            if signer.verify(key, signature) {
                return self.network_key.user_key(key);
            }
        }
        self.network_of_address(req.client_ip)
    }

    fn asset_plan(
        &self,
        req: &AssetRequest<'_>,
        origin: &str,
        asset: &AssetRoute,
        prepared: &Rc<PreparedRollout>,
        routed: Routed,
        head: bool,
    ) -> AssetPlan {
        let load_of = |version: &Version| Load {
            cache_key: asset.pinned_url(origin, version),
            object_key: asset.object_key(version),
        };
        let fallback =
            (asset.pin.is_none() && routed.channel == Some(Channel::Canary)).then(|| {
                (
                    prepared.rollout.stable.clone(),
                    load_of(&prepared.rollout.stable),
                )
            });
        let mut headers = HeaderLines::with_capacity(512);
        let cache_control = match (asset.pin.is_some(), routed.overridden.is_some()) {
            (_, true) => "private, no-store",
            (true, false) => &self.pinned_cache_control,
            (false, false) => &self.floating_cache_control,
        };
        headers.set("cache-control", cache_control);
        if let (Some(ch), None) = (routed.overridden, &asset.pin) {
            headers.set(OVERRIDE_HEADER, ch.as_str());
        }
        // Real script loads of the floating URL feed the canary's health; HEAD requests,
        // overrides (QA, probes), pinned chunk loads and loads from pages outside
        // `health.origins` do not.
        let from_listed_page = || load_counts(prepared.rollout.page_origins(), req.referer);
        let tally = match (&routed.decision, routed.overridden, head) {
            (Some(d), None, false) if from_listed_page() => Some(TallyFacts::new(
                prepared,
                d.channel,
                d.client,
                self.network_of(req),
            )),
            _ => None,
        };
        if let Some(d) = &routed.decision {
            headers.set(&self.settings.cohort_header, &text::decimal(d.cohort));
            // A client id is issued only with a counted load: a HEAD, an override or a page
            // outside `health.origins` never mints one (ids cannot be stockpiled unseen).
            if let (Some(cookie), Some(_)) = (&d.set_cookie, &tally) {
                headers.set("set-cookie", cookie);
            }
        }
        AssetPlan {
            bundle: asset.bundle.clone(),
            head,
            load: load_of(&routed.version),
            version: routed.version,
            fallback,
            default_content_type: content_type_for(&asset.path),
            headers,
            channel: routed.channel,
            tally,
            serving_canary: prepared
                .rollout
                .serving_canary(self.settings.cohorts)
                .is_some(),
        }
    }
}

/// Where a request is routed, before the plan is written out.
struct Routed {
    version: Version,
    channel: Option<Channel>,
    decision: Option<OwnedDecision>,
    overridden: Option<Channel>,
    must_be_published: bool,
}

/// A [`Decision`] detached from the prepared rollout it borrows.
struct OwnedDecision {
    cohort: u16,
    channel: Channel,
    version: Version,
    client: u64,
    set_cookie: Option<String>,
}

/// The rate-limit key of a keyed network.
fn limit_key(network: u64) -> String {
    format!("net:{network:016x}")
}

fn owned(d: Decision<'_>) -> OwnedDecision {
    OwnedDecision {
        cohort: d.cohort,
        channel: d.channel,
        version: d.version.clone(),
        client: d.client,
        set_cookie: d.set_cookie,
    }
}

/// The counting facts of one floating request or admitted report: bundle, stable, canary,
/// weight, channel, client, keyed network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TallyFacts {
    bundle: BundleName,
    stable: Version,
    canary: Option<Version>,
    weight: Weight,
    on_canary: bool,
    client: u64,
    network: u64,
}

impl TallyFacts {
    fn new(prepared: &PreparedRollout, channel: Channel, client: u64, network: u64) -> Self {
        let r = &prepared.rollout;
        Self {
            bundle: prepared.bundle.clone(),
            stable: r.stable.clone(),
            canary: r.live_canary().cloned(),
            weight: r.weight,
            on_canary: channel == Channel::Canary,
            client,
            network,
        }
    }

    /// As text, for a report's token: the fields [`TallyFacts::parse`] reads back.
    fn token(&self) -> String {
        use std::fmt::Write;
        let mut token = String::with_capacity(64);
        // Writing to a String cannot fail.
        let _ = write!(
            token,
            "{}\t{}\t{}\t{}\t{}\t{:x}\t{:x}",
            self.bundle,
            self.stable,
            self.canary.as_ref().map_or("", Version::as_str),
            self.weight.percent(),
            u8::from(self.on_canary),
            self.client,
            self.network,
        );
        token
    }

    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('\t');
        let mut next = || parts.next();
        let bundle = BundleName::parse(next()?).ok()?;
        let stable = Version::parse(next()?).ok()?;
        let canary = match next()? {
            "" => None,
            v => Some(Version::parse(v).ok()?),
        };
        let weight = Weight::new(next()?.parse().ok()?).ok()?;
        let on_canary = next()? == "1";
        let client = u64::from_str_radix(next()?, 16).ok()?;
        let network = u64::from_str_radix(next()?, 16).ok()?;
        Some(Self {
            bundle,
            stable,
            canary,
            weight,
            on_canary,
            client,
            network,
        })
    }
}

mod held;
mod report;

use held::Held;

pub use report::{rate_limited_body, ReportRequest, ReportStep};

#[cfg(test)]
mod tests;
