//! Change notification: PostgreSQL `LISTEN/NOTIFY` as a wake-up hint.
//!
//! A writer calls [`notify`] in the transaction that changes something (the notification is
//! delivered at commit); every node runs [`listen`], which wakes a [`Notify`] on each
//! notification and after every reconnection (notifications sent while the connection was down
//! are lost). Readers still poll a generation counter at a slower pace, so a lost notification
//! only delays a change, never loses it.

use std::sync::Arc;
use std::time::Duration;

use sqlx::AnyConnection;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;

use crate::{Backend, redact};

/// Sends a notification on `channel` (PostgreSQL; nothing on SQLite, where one host polls).
pub async fn notify(
    conn: &mut AnyConnection,
    backend: Backend,
    channel: &str,
    payload: &str,
) -> Result<(), sqlx::Error> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_notify($1, $2)").bind(channel).bind(payload).execute(conn).await?;
    }
    Ok(())
}

/// Listens on `channel` of the PostgreSQL database at `url` for as long as the task lives,
/// waking `wake` on each notification and on each reconnection; connection problems are
/// logged when they start and when they end, not on every try.
pub fn listen(url: String, channel: &'static str, wake: Arc<Notify>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut pause = Duration::from_millis(250);
        let mut failing = false;
        loop {
            match listen_once(&url, channel, &wake, &mut failing).await {
                Ok(()) => pause = Duration::from_millis(250),
                Err(e) => {
                    if !failing {
                        // the database may be away: the follower looks now, not at its next poll
                        wake.notify_one();
                        tracing::warn!(event = "notifications_lost", channel, url = %redact(&url), error = %e,
                            "change notifications are not received; polling only");
                        failing = true;
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    })
}

/// One listening connection, until it fails.
async fn listen_once(url: &str, channel: &str, wake: &Notify, failing: &mut bool) -> Result<(), sqlx::Error> {
    let mut listener = tokio::time::timeout(crate::ACQUIRE_TIMEOUT, PgListener::connect(url))
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)??;
    listener.listen(channel).await?;
    if std::mem::take(failing) {
        tracing::info!(event = "notifications_restored", channel);
    }
    // whatever changed while nobody listened is looked for now
    wake.notify_one();
    loop {
        match listener.try_recv().await? {
            Some(_) => wake.notify_one(),
            // the connection was lost and made again: a notification may have been missed
            None => wake.notify_one(),
        }
    }
}
