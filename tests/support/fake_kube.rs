//! A fake Kubernetes API server for the tests: the real REST paths and object JSON for Jobs,
//! Pods, pod logs, Events, Secrets, ServiceAccounts and Argo CD Applications, with list, get,
//! create, delete and watch. Watches stream newline-delimited `{"type","object"}` events from a
//! resourceVersion, end after `timeoutSeconds` (or the server's own limit,
//! [`FakeKube::close_watches_after`]), answer a compacted resourceVersion with an `ERROR` event
//! carrying `410 Gone` ([`FakeKube::compact`]) and send a `BOOKMARK` when asked. Delete honours
//! `propagationPolicy` with the REST API's orphaning default for Jobs. Logs take the
//! `container` parameter as the API server does (a 400 for a pod of several containers without
//! one), `tailLines`, `limitBytes` and `follow`; a followed stream can be made to break. A created Job really runs (`fake_kubelet.rs` plays the Job controller and the kubelet:
//! intermediate conditions, grace periods, evictions, transient pod problems, `FailedCreate`).
//!
//! A created Job gets the API server's defaults and its 422 validation, and its pods Pod
//! Security "restricted" ([`FakeKube::enforce_restricted`]), a LimitRange's maximum and a used-up
//! ResourceQuota (`fake_admission.rs`, which says what of those it leaves out).
//!
//! Does not model: authentication and RBAC (only a switch answering 403 to everything), other
//! admission (mutating webhooks beyond the sidecar, which Pod Security does not check, and
//! Kueue's, which only suspends Jobs: no Workload objects, quotas or preemption), native
//! sidecars (init containers with `restartPolicy: Always`),
//! optimistic-concurrency conflicts, set-based label selectors, pagination,
//! `ttlSecondsAfterFinished`, images (names only trigger simulations, see `fake_kubelet.rs`),
//! and garbage collection beyond a Job's pods.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Request, State},
    http::{Method, StatusCode, header},
    response::Response,
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::broadcast, task::JoinHandle};

#[path = "fake_admission.rs"]
mod admission;
#[path = "fake_kubelet.rs"]
mod kubelet;

/// How long a deleted pod lingers with its `deletionTimestamp` (its containers stopping).
const POD_TERMINATION: Duration = Duration::from_millis(300);

#[derive(Clone, Debug)]
struct Event {
    version: u64,
    collection: String,
    kind: &'static str,
    object: Value,
}

/// A container's output so far (keyed `pod/container`); `done` once the container has ended.
#[derive(Default)]
struct PodLog {
    text: String,
    done: bool,
}

#[derive(Default)]
struct Store {
    objects: BTreeMap<(String, String), Value>,
    log: Vec<Event>,
    version: u64,
    pod_logs: BTreeMap<String, PodLog>,
    processes: BTreeMap<String, JoinHandle<()>>,
}

struct Shared {
    store: Mutex<Store>,
    events: broadcast::Sender<Event>,
    forbidden: AtomicBool,
    jobs_created: AtomicUsize,
    /// The API server ends every watch after this long (its own timeout; `timeoutSeconds`
    /// ends it sooner).
    watch_limit: Mutex<Option<Duration>>,
    /// Events at or below this resourceVersion are compacted: a watch from there is 410 Gone.
    compacted: std::sync::atomic::AtomicU64,
    watches_started: AtomicUsize,
    /// A mesh injects a sidecar container into every pod.
    sidecar: AtomicBool,
    /// The namespace enforces Pod Security "restricted" (`pod-security.kubernetes.io/enforce`).
    restricted: AtomicBool,
    /// A LimitRange's maximum per container: (resource, quantity).
    limit_range: Mutex<Option<(String, String)>>,
    /// Until then, a ResourceQuota of the namespace is used up by others.
    quota_exhausted_until: Mutex<Option<tokio::time::Instant>>,
    /// Followed log streams break after this many bytes (a dropped connection).
    log_breaks_after: Mutex<Option<usize>>,
    /// A queue (Kueue) holds every new Job suspended this long before admitting it.
    queue: Mutex<Option<Duration>>,
    /// Pods the tests asked to evict.
    evictions: Mutex<std::collections::BTreeSet<String>>,
    /// `METHOD path?query` of every request served.
    requests: Mutex<Vec<String>>,
}

/// The fake API server.
pub(crate) struct FakeKube {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl FakeKube {
    /// Starts serving on 127.0.0.1.
    pub(crate) async fn start() -> FakeKube {
        let shared = Arc::new(Shared {
            store: Mutex::default(),
            events: broadcast::channel(4096).0,
            forbidden: AtomicBool::new(false),
            jobs_created: AtomicUsize::new(0),
            watch_limit: Mutex::new(None),
            compacted: std::sync::atomic::AtomicU64::new(0),
            watches_started: AtomicUsize::new(0),
            sidecar: AtomicBool::new(false),
            restricted: AtomicBool::new(false),
            limit_range: Mutex::new(None),
            quota_exhausted_until: Mutex::new(None),
            queue: Mutex::new(None),
            log_breaks_after: Mutex::new(None),
            evictions: Mutex::default(),
            requests: Mutex::default(),
        });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake kube");
        let addr = listener.local_addr().expect("addr");
        let router = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let service = TowerToHyperService::new(router.clone());
                connections.spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeKube {
            addr,
            shared,
            task: Some(task),
        }
    }

    /// The API server URL.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving (and drops open watches): the API server is down.
    pub(crate) async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Answers every request with 403 Forbidden, as for a service account without rights.
    pub(crate) fn forbid(&self, forbidden: bool) {
        self.shared.forbidden.store(forbidden, Ordering::SeqCst);
    }

    /// Ends every watch after `limit`, as the API server does with its own timeout, so
    /// clients must re-establish their watches.
    pub(crate) fn close_watches_after(&self, limit: Duration) {
        *self.shared.watch_limit.lock().expect("watch limit") = Some(limit);
    }

    /// Compacts the event history: a watch from any resourceVersion seen so far is answered
    /// with an `ERROR` event carrying `410 Gone`, as etcd compaction makes the API server do.
    pub(crate) fn compact(&self) {
        let version = self.shared.store.lock().expect("store").version;
        self.shared.compacted.store(version, Ordering::SeqCst);
    }

    /// Stores a Secret `name` in `namespace` with `keys` (base64 in `data`, as the API
    /// answers).
    pub(crate) fn put_secret(&self, namespace: &str, name: &str, keys: &[(&str, &str)]) {
        let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
        let data: serde_json::Map<String, Value> = keys
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!(b64(v))))
            .collect();
        let secret = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": data,
            "metadata": {"name": name, "namespace": namespace},
        });
        self.put("/api/v1", namespace, "secrets", secret);
    }

    /// `METHOD path?query` of every request served so far, oldest first.
    pub(crate) fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().expect("requests").clone()
    }

    /// Watch requests served so far (a client that re-establishes its watches makes several).
    pub(crate) fn watches_started(&self) -> usize {
        self.shared.watches_started.load(Ordering::SeqCst)
    }

    /// Injects an `istio-proxy` sidecar container into every pod from now on, as a service
    /// mesh's admission webhook does.
    pub(crate) fn inject_sidecar(&self) {
        self.shared.sidecar.store(true, Ordering::SeqCst);
    }

    /// Labels the namespace `pod-security.kubernetes.io/enforce: restricted`: a pod that
    /// violates the level is never created (a `FailedCreate` Warning on its Job).
    pub(crate) fn enforce_restricted(&self) {
        self.shared.restricted.store(true, Ordering::SeqCst);
    }

    /// Adds a LimitRange with a per-container maximum of `max` for `resource` (`cpu`).
    pub(crate) fn limit_range(&self, resource: &str, max: &str) {
        *self.shared.limit_range.lock().expect("limit range") =
            Some((resource.to_string(), max.to_string()));
    }

    /// Uses up the namespace's ResourceQuota for `duration` (other workloads' pods): the Job
    /// controller's pod creations are refused and retried until it frees up.
    pub(crate) fn exhaust_quota_for(&self, duration: Duration) {
        *self.shared.quota_exhausted_until.lock().expect("quota") =
            Some(tokio::time::Instant::now() + duration);
    }

    /// Queues every Job created from now on for `duration`, as Kueue does: its webhook creates
    /// the Job with `suspend: true`, and it unsuspends the Job once admitted.
    pub(crate) fn queue_jobs_for(&self, duration: Duration) {
        *self.shared.queue.lock().expect("queue") = Some(duration);
    }

    /// Breaks every followed log stream once it has sent `bytes` (a connection dropped by a
    /// proxy or the kubelet restarting): the client must read the log back another way.
    pub(crate) fn break_log_streams_after(&self, bytes: usize) {
        *self.shared.log_breaks_after.lock().expect("log breaks") = Some(bytes);
    }

    /// Evicts `pod` (a node drain): it gets `DisruptionTarget`, its container is killed.
    pub(crate) fn evict(&self, pod: &str) {
        self.shared
            .evictions
            .lock()
            .expect("evictions")
            .insert(pod.to_string());
    }

    /// Jobs created so far (AlreadyExists does not count).
    pub(crate) fn jobs_created(&self) -> usize {
        self.shared.jobs_created.load(Ordering::SeqCst)
    }

    /// Stores `object` (a Secret, an Application…) in `namespace` under `collection`
    /// (e.g. `/api/v1` + `secrets`), or replaces it, emitting a watch event.
    pub(crate) fn put(&self, api: &str, namespace: &str, resource: &str, object: Value) {
        let collection = format!("{api}/namespaces/{namespace}/{resource}");
        let name = object["metadata"]["name"]
            .as_str()
            .expect("metadata.name")
            .to_string();
        let mut store = self.shared.store.lock().expect("store");
        let kind = if store
            .objects
            .contains_key(&(collection.clone(), name.clone()))
        {
            "MODIFIED"
        } else {
            "ADDED"
        };
        save(&self.shared, &mut store, &collection, &name, object, kind);
    }

    /// The stored object, if any.
    pub(crate) fn get(
        &self,
        api: &str,
        namespace: &str,
        resource: &str,
        name: &str,
    ) -> Option<Value> {
        let collection = format!("{api}/namespaces/{namespace}/{resource}");
        self.shared
            .store
            .lock()
            .expect("store")
            .objects
            .get(&(collection, name.to_string()))
            .cloned()
    }

    /// Names of the stored objects of a collection.
    pub(crate) fn names(&self, api: &str, namespace: &str, resource: &str) -> Vec<String> {
        let collection = format!("{api}/namespaces/{namespace}/{resource}");
        let store = self.shared.store.lock().expect("store");
        store
            .objects
            .keys()
            .filter(|(c, _)| *c == collection)
            .map(|(_, n)| n.clone())
            .collect()
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Saves an object with a new resourceVersion and records the watch event.
fn save(
    shared: &Shared,
    store: &mut Store,
    collection: &str,
    name: &str,
    mut object: Value,
    kind: &'static str,
) {
    store.version += 1;
    let version = store.version;
    object["metadata"]["resourceVersion"] = json!(version.to_string());
    if kind == "DELETED" {
        store
            .objects
            .remove(&(collection.to_string(), name.to_string()));
    } else {
        store
            .objects
            .insert((collection.to_string(), name.to_string()), object.clone());
    }
    let event = Event {
        version,
        collection: collection.to_string(),
        kind,
        object,
    };
    store.log.push(event.clone());
    let _ = shared.events.send(event);
}

fn update(shared: &Shared, collection: &str, name: &str, change: impl FnOnce(&mut Value)) {
    let mut store = shared.store.lock().expect("store");
    let Some(mut object) = store
        .objects
        .get(&(collection.to_string(), name.to_string()))
        .cloned()
    else {
        return;
    };
    change(&mut object);
    save(shared, &mut store, collection, name, object, "MODIFIED");
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": message, "reason": reason, "code": code});
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("response")
}

fn ok(value: &Value) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(value.to_string()))
        .expect("response")
}

fn query(request: &Request) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// True when `object` passes the `fieldSelector` (`a.b=v` equalities on any field path) and the
/// `labelSelector` (`k=v` equalities).
fn selected(object: &Value, q: &BTreeMap<String, String>) -> bool {
    let field_ok = q.get("fieldSelector").is_none_or(|f| {
        f.split(',').filter(|c| !c.is_empty()).all(|c| {
            let (path, v) = c.split_once('=').unwrap_or((c, ""));
            path.split('.').try_fold(object, |o, k| o.get(k)) == Some(&json!(v))
        })
    });
    let label_ok = q.get("labelSelector").is_none_or(|l| {
        l.split(',').filter(|c| !c.is_empty()).all(|c| {
            let (k, v) = c.split_once('=').unwrap_or((c, ""));
            object["metadata"]["labels"][k] == v
        })
    });
    field_ok && label_ok
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let uri = request.uri();
    let target = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    shared
        .requests
        .lock()
        .expect("requests")
        .push(format!("{} {target}", request.method()));
    if shared.forbidden.load(Ordering::SeqCst) {
        return status(
            403,
            "Forbidden",
            "serviceaccount phasegate cannot do this (fake RBAC)",
        );
    }
    let path = request.uri().path().trim_end_matches('/').to_string();
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    let prefix = if parts.first() == Some(&"api") { 2 } else { 3 };
    if parts.len() < prefix + 3 || parts[prefix] != "namespaces" {
        return status(404, "NotFound", &format!("the fake does not serve {path}"));
    }
    let collection = parts[..prefix + 3].join("/");
    let collection = format!("/{collection}");
    let name = parts.get(prefix + 3).map(|s| s.to_string());
    let q = query(&request);
    let method = request.method().clone();
    let body: Bytes = axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    match (method, name, parts.get(prefix + 4).copied()) {
        (Method::GET, Some(pod), Some("log")) => pod_log(&shared, &collection, &pod, &q),
        (Method::GET, Some(name), None) => {
            let store = shared.store.lock().expect("store");
            match store.objects.get(&(collection.clone(), name.clone())) {
                Some(o) => ok(o),
                None => status(404, "NotFound", &format!("{name} not found")),
            }
        }
        (Method::GET, None, None) if q.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch(&shared, &collection, &q)
        }
        (Method::GET, None, None) => {
            let store = shared.store.lock().expect("store");
            let items: Vec<&Value> = store
                .objects
                .iter()
                .filter(|((c, _), o)| *c == collection && selected(o, &q))
                .map(|(_, o)| o)
                .collect();
            ok(
                &json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": store.version.to_string()}, "items": items}),
            )
        }
        (Method::POST, None, None) => create(&shared, &collection, &body),
        (Method::DELETE, Some(name), None) => delete(&shared, &collection, &name, &body, &q),
        _ => status(405, "MethodNotAllowed", "not modelled by the fake"),
    }
}

/// `GET …/pods/NAME/log`: the container's whole log or its `tailLines`, at most `limitBytes`
/// of it; with `follow=true`, a stream that grows as the container writes and ends when it ends
/// (or at `limitBytes`, or breaks: [`FakeKube::break_log_streams_after`]). As the API server: a pod
/// with several containers and no `container` parameter is a 400 naming them, an unknown
/// container is a 400, a container that has not started yet is a 400.
fn pod_log(shared: &Arc<Shared>, pods: &str, pod: &str, q: &BTreeMap<String, String>) -> Response {
    let store = shared.store.lock().expect("store");
    let Some(object) = store.objects.get(&(pods.to_string(), pod.to_string())) else {
        return status(404, "NotFound", &format!("pods \"{pod}\" not found"));
    };
    let containers: Vec<&str> = object["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let container = match q.get("container") {
        Some(c) if containers.contains(&c.as_str()) => c.clone(),
        Some(c) => {
            return status(
                400,
                "BadRequest",
                &format!("container {c} is not valid for pod {pod}"),
            );
        }
        None if containers.len() == 1 => containers[0].to_string(),
        None => {
            return status(
                400,
                "BadRequest",
                &format!(
                    "a container name must be specified for pod {pod}, choose one of: [{}]",
                    containers.join(" ")
                ),
            );
        }
    };
    if object["status"]["phase"] == "Pending" {
        return status(
            400,
            "BadRequest",
            &format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            ),
        );
    }
    let key = format!("{pod}/{container}");
    let text = store
        .pod_logs
        .get(&key)
        .map(|l| l.text.clone())
        .unwrap_or_default();
    drop(store);
    let limit: usize = q
        .get("limitBytes")
        .and_then(|l| l.parse().ok())
        .unwrap_or(usize::MAX);
    if q.get("follow").is_some_and(|f| f == "true") {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
        let shared = shared.clone();
        let breaks = *shared.log_breaks_after.lock().expect("log breaks");
        tokio::spawn(async move {
            let mut sent = 0;
            while !tx.is_closed() {
                let (text, done) = match shared.store.lock().expect("store").pod_logs.get(&key) {
                    Some(log) => (log.text.as_bytes()[sent..].to_vec(), log.done),
                    None => (Vec::new(), true),
                };
                let room = limit.min(breaks.unwrap_or(usize::MAX)) - sent;
                let chunk = &text[..text.len().min(room)];
                sent += chunk.len();
                if !chunk.is_empty() && tx.send(Ok(Bytes::copy_from_slice(chunk))).await.is_err() {
                    return;
                }
                if breaks.is_some_and(|b| sent >= b) {
                    let broken = std::io::Error::other("connection reset by the fake");
                    let _ = tx.send(Err(broken)).await;
                    return;
                }
                if done || sent >= limit {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        return Response::builder()
            .body(Body::from_stream(
                tokio_stream::wrappers::ReceiverStream::new(rx),
            ))
            .expect("response");
    }
    let tail: usize = q
        .get("tailLines")
        .and_then(|t| t.parse().ok())
        .unwrap_or(usize::MAX);
    let lines: Vec<&str> = text.lines().collect();
    let kept = lines[lines.len().saturating_sub(tail)..].join("\n");
    let mut kept = if kept.is_empty() { kept } else { kept + "\n" }.into_bytes();
    kept.truncate(limit);
    Response::builder()
        .body(Body::from(kept))
        .expect("response")
}

/// `GET …?watch=true`: events after `resourceVersion` (all current objects as `ADDED` from 0 or
/// none), then live ones. Ends after `timeoutSeconds` or the server's own limit; a compacted
/// `resourceVersion` is an `ERROR` event with a `410 Gone` Status; `allowWatchBookmarks=true`
/// gets a `BOOKMARK` with the current resourceVersion once the backlog is sent.
fn watch(shared: &Shared, collection: &str, q: &BTreeMap<String, String>) -> Response {
    shared.watches_started.fetch_add(1, Ordering::SeqCst);
    let from: u64 = q
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let limit = [
        q.get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .map(Duration::from_secs),
        *shared.watch_limit.lock().expect("watch limit"),
    ]
    .into_iter()
    .flatten()
    .min();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(256);
    let line = |kind: &str, object: &Value| {
        Bytes::from(json!({"type": kind, "object": object}).to_string() + "\n")
    };
    if from != 0 && from <= shared.compacted.load(Ordering::SeqCst) {
        let gone = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("too old resource version: {from}"), "reason": "Expired", "code": 410});
        let _ = tx.try_send(Ok(line("ERROR", &gone)));
        return stream_response(rx);
    }
    let store = shared.store.lock().expect("store");
    let mut live = shared.events.subscribe();
    let mut backlog: Vec<Event> = if from == 0 {
        let current = store.objects.iter().filter(|((c, _), _)| c == collection);
        current
            .map(|((c, _), o)| Event {
                version: 0,
                collection: c.clone(),
                kind: "ADDED",
                object: o.clone(),
            })
            .collect()
    } else {
        store
            .log
            .iter()
            .filter(|e| e.version > from && e.collection == collection)
            .cloned()
            .collect()
    };
    let last = store.version;
    drop(store);
    let bookmark = q
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true")
        .then(|| {
            json!({"kind": kind_of(collection), "apiVersion": api_version_of(collection),
                        "metadata": {"resourceVersion": last.to_string()}})
        });
    let (collection, q) = (collection.to_string(), q.clone());
    tokio::spawn(async move {
        let events = async {
            for e in backlog.drain(..) {
                if selected(&e.object, &q) && tx.send(Ok(line(e.kind, &e.object))).await.is_err() {
                    return;
                }
            }
            if let Some(b) = &bookmark
                && tx.send(Ok(line("BOOKMARK", b))).await.is_err()
            {
                return;
            }
            while let Ok(e) = live.recv().await {
                if e.version > last
                    && e.collection == collection
                    && selected(&e.object, &q)
                    && tx.send(Ok(line(e.kind, &e.object))).await.is_err()
                {
                    return;
                }
            }
        };
        match limit {
            Some(limit) => drop(tokio::time::timeout(limit, events).await),
            None => events.await,
        }
    });
    stream_response(rx)
}

fn stream_response(rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
        .expect("response")
}

/// The kind of the objects of a collection (`…/jobs` → `Job`), for bookmarks.
fn kind_of(collection: &str) -> &'static str {
    match collection.rsplit('/').next() {
        Some("jobs") => "Job",
        Some("pods") => "Pod",
        Some("events") => "Event",
        Some("secrets") => "Secret",
        Some("applications") => "Application",
        _ => "Unknown",
    }
}

/// `/apis/batch/v1/namespaces/…` → `batch/v1`; `/api/v1/…` → `v1`.
fn api_version_of(collection: &str) -> String {
    let parts: Vec<&str> = collection.split('/').skip(1).collect();
    if parts.first() == Some(&"api") {
        parts.get(1).copied().unwrap_or("v1").to_string()
    } else {
        parts.get(1..3).map(|p| p.join("/")).unwrap_or_default()
    }
}

fn create(shared: &Arc<Shared>, collection: &str, body: &[u8]) -> Response {
    let Ok(mut object) = serde_json::from_slice::<Value>(body) else {
        return status(400, "BadRequest", "body is not JSON");
    };
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let namespace = collection
        .split('/')
        .rev()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let mut store = shared.store.lock().expect("store");
    if store
        .objects
        .contains_key(&(collection.to_string(), name.clone()))
    {
        return status(
            409,
            "AlreadyExists",
            &format!("jobs.batch \"{name}\" already exists"),
        );
    }
    if collection.ends_with("/jobs") {
        if shared.queue.lock().expect("queue").is_some() {
            object["spec"]["suspend"] = json!(true); // Kueue's mutating webhook
        }
        admission::default_job(&mut object);
        let causes = admission::invalid_job(&object);
        if !causes.is_empty() {
            let refusal = admission::invalid_status(&name, &causes);
            return Response::builder()
                .status(StatusCode::UNPROCESSABLE_ENTITY)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(refusal.to_string()))
                .expect("response");
        }
    }
    object["metadata"]["namespace"] = json!(namespace);
    object["metadata"]["uid"] = json!(format!("uid-{}", store.version + 1));
    object["metadata"]["creationTimestamp"] = json!(kubelet::now());
    save(
        shared,
        &mut store,
        collection,
        &name,
        object.clone(),
        "ADDED",
    );
    let created = store.objects[&(collection.to_string(), name.clone())].clone();
    if collection.ends_with("/jobs") {
        shared.jobs_created.fetch_add(1, Ordering::SeqCst);
        let process = tokio::spawn(kubelet::run_job(
            shared.clone(),
            collection.to_string(),
            namespace,
            object,
        ));
        store.processes.insert(name, process);
    }
    drop(store);
    Response::builder()
        .status(StatusCode::CREATED)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(created.to_string()))
        .expect("response")
}

/// `DELETE`: honours `propagationPolicy` (in the DeleteOptions body or the query). Without one,
/// a `batch/v1` Job orphans its pods, as the REST API does (only kubectl asks for background):
/// they keep running, without their owner reference. `Background` and `Foreground` delete them
/// too: each first gets a `deletionTimestamp`, then goes once its grace period is over.
fn delete(
    shared: &Arc<Shared>,
    collection: &str,
    name: &str,
    body: &[u8],
    q: &BTreeMap<String, String>,
) -> Response {
    let options: Value = serde_json::from_slice(body).unwrap_or_default();
    let policy = options["propagationPolicy"]
        .as_str()
        .map(str::to_string)
        .or_else(|| q.get("propagationPolicy").cloned())
        .unwrap_or_else(|| "Orphan".into());
    let mut store = shared.store.lock().expect("store");
    let Some(object) = store
        .objects
        .get(&(collection.to_string(), name.to_string()))
        .cloned()
    else {
        return status(404, "NotFound", &format!("{name} not found"));
    };
    save(
        shared,
        &mut store,
        collection,
        name,
        object.clone(),
        "DELETED",
    );
    if !collection.ends_with("/jobs") {
        return ok(
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}),
        );
    }
    let pods = collection
        .replace("/apis/batch/v1/", "/api/v1/")
        .replace("/jobs", "/pods");
    let uid = object["metadata"]["uid"].clone();
    let owned: Vec<(String, Value)> = store
        .objects
        .iter()
        .filter(|((c, _), o)| *c == pods && o["metadata"]["ownerReferences"][0]["uid"] == uid)
        .map(|((_, n), o)| (n.clone(), o.clone()))
        .collect();
    if policy == "Orphan" {
        for (pod, mut o) in owned {
            o["metadata"]
                .as_object_mut()
                .expect("metadata")
                .remove("ownerReferences");
            save(shared, &mut store, &pods, &pod, o, "MODIFIED");
        }
    } else {
        if let Some(process) = store.processes.remove(name) {
            process.abort();
        }
        for (pod, mut o) in owned {
            o["metadata"]["deletionTimestamp"] = json!(kubelet::now());
            save(shared, &mut store, &pods, &pod, o.clone(), "MODIFIED");
            let (shared, pods) = (shared.clone(), pods.clone());
            tokio::spawn(async move {
                tokio::time::sleep(POD_TERMINATION).await;
                let mut store = shared.store.lock().expect("store");
                save(&shared, &mut store, &pods, &pod, o, "DELETED");
            });
        }
    }
    ok(&json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}))
}
