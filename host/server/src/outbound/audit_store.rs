//! The outbound audit of a home that shares a PostgreSQL store with other nodes: attempts go to the
//! store's `outbound_attempts` table (append-only, with the node that made them, bounded to the
//! newest [`MAX_RECORDS`]), so `octo outbound` on any node shows every node's attempts.
//!
//! Recording is called from synchronous code (the runtime's audit sink, the host's clients), often
//! on a thread of an async runtime. One thread per process, with a runtime of its own, keeps each
//! home's store open and performs the inserts; a caller waits for its insert (at most
//! [`REPLY_TIMEOUT`]), so a command that exits right after an attempt loses nothing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use octo_store::Store;

use crate::error::Result;
use crate::home::Home;

/// How many attempts the table keeps (the oldest beyond are dropped): about what the audit file
/// and its rotated predecessor hold together.
pub const MAX_RECORDS: usize = 10_000;

/// How long a caller waits for the store.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

enum Job {
    Append {
        node: String,
        records: Vec<String>,
        reply: mpsc::Sender<Result<()>>,
    },
    Read {
        limit: usize,
        reply: mpsc::Sender<Result<Vec<(String, String)>>>,
    },
}

struct Request {
    home: Home,
    job: Job,
}

static WORKER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();

fn worker() -> Result<mpsc::Sender<Request>> {
    let sender = WORKER.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Request>();
        let spawned = std::thread::Builder::new()
            .name("octo-audit".into())
            .spawn(move || serve(receiver));
        if let Err(e) = spawned {
            tracing::warn!("cannot start the audit thread: {e}");
        }
        Mutex::new(sender)
    });
    Ok(sender.lock().unwrap_or_else(|e| e.into_inner()).clone())
}

fn serve(receiver: mpsc::Receiver<Request>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::warn!("cannot start the audit thread's runtime: {e}");
            return;
        }
    };
    let mut stores: HashMap<PathBuf, Arc<dyn Store>> = HashMap::new();
    while let Ok(request) = receiver.recv() {
        runtime.block_on(async {
            let root = request.home.root().to_path_buf();
            let store = match stores.get(&root) {
                Some(store) => Ok(store.clone()),
                None => crate::tasks::open_store(&request.home).await,
            };
            let store = match store {
                Ok(store) => {
                    stores.insert(root.clone(), store.clone());
                    store
                }
                Err(e) => {
                    let message = e.to_string();
                    match request.job {
                        Job::Append { reply, .. } => {
                            let _ = reply.send(Err(e));
                        }
                        Job::Read { reply, .. } => {
                            let _ = reply.send(Err(err!(Failed, "{message}")));
                        }
                    }
                    return;
                }
            };
            let failed = match request.job {
                Job::Append {
                    node,
                    records,
                    reply,
                } => {
                    let done = store.append_outbound(&node, &records, MAX_RECORDS).await;
                    let failed = done.is_err();
                    let _ = reply.send(done.map_err(Into::into));
                    failed
                }
                Job::Read { limit, reply } => {
                    let read = store.outbound_attempts(limit).await;
                    let failed = read.is_err();
                    let _ = reply.send(read.map_err(Into::into));
                    failed
                }
            };
            if failed {
                // Opened afresh next time.
                stores.remove(&root);
            }
        });
    }
}

fn wait<T>(reply: mpsc::Receiver<Result<T>>) -> Result<T> {
    match reply.recv_timeout(REPLY_TIMEOUT) {
        Ok(result) => result,
        Err(_) => bail!(
            Failed,
            "the store did not answer within {} s",
            REPLY_TIMEOUT.as_secs()
        ),
    }
}

/// Appends `records` (audit JSON lines) made by `node` to the home's store.
pub fn append(home: &Home, node: &str, records: Vec<String>) -> Result<()> {
    let (reply, answer) = mpsc::channel();
    worker()?
        .send(Request {
            home: home.clone(),
            job: Job::Append {
                node: node.to_string(),
                records,
                reply,
            },
        })
        .map_err(|_| err!(Failed, "the audit thread is gone"))?;
    wait(answer)
}

/// The newest [`MAX_RECORDS`] attempts in the home's store, oldest first, as `(node, record)`.
pub fn read(home: &Home) -> Result<Vec<(String, String)>> {
    let (reply, answer) = mpsc::channel();
    worker()?
        .send(Request {
            home: home.clone(),
            job: Job::Read {
                limit: MAX_RECORDS,
                reply,
            },
        })
        .map_err(|_| err!(Failed, "the audit thread is gone"))?;
    wait(answer)
}
