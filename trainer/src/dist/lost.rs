//! Which rank was lost: [`ProcessGroup::find_lost`] reads the heartbeats every rank writes
//! through the rendezvous store (once a second, from a thread of the shim's, so a rank
//! blocked in a collective still beats) and names the ranks whose heartbeat stopped.
//!
//! A collective only says that it failed (Gloo: the connection closed, or a timeout), not
//! which peer is at fault, and in a ring every rank waits on its neighbour. So when a
//! collective fails, this rank marks its own heartbeat "stopping" (it is leaving on an error,
//! not lost), reads every rank's heartbeat twice, [`WATCH`] apart, and calls lost the ranks
//! whose value did not move and that did not say they were stopping. A store that does not
//! answer means its host, rank 0, is gone. Every wait is bounded: each store request by
//! [`READ_TIMEOUT`] (or the group's timeout, if shorter), the watch by [`WATCH`].

use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::group::ProcessGroup;

/// How long a rank's heartbeat is watched for a move: three beats.
pub const WATCH: Duration = Duration::from_secs(3);

/// The longest one heartbeat read waits for the store.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What the heartbeats say after a collective failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Lost {
    /// These ranks' heartbeats stopped: each rank with the seconds since its last beat.
    Ranks {
        /// `(rank, seconds since its last heartbeat)`, by rank.
        ranks: Vec<(usize, f64)>,
        /// The world size.
        world_size: usize,
    },
    /// The store did not answer: rank 0, which serves it, is gone or unreachable.
    Store {
        /// Where the store listens.
        addr: String,
        /// Its port.
        port: u16,
        /// The world size.
        world_size: usize,
        /// What the store client said.
        message: String,
    },
    /// Every other rank still beats, or said it is stopping on an error of its own.
    Unknown {
        /// The ranks that said they are stopping on their own error.
        stopping: Vec<usize>,
    },
}

impl Lost {
    /// The ranks found lost (rank 0 when its store is gone), by rank.
    pub fn ranks(&self) -> Vec<usize> {
        match self {
            Lost::Ranks { ranks, .. } => ranks.iter().map(|&(r, _)| r).collect(),
            Lost::Store { .. } => vec![0],
            Lost::Unknown { .. } => Vec::new(),
        }
    }
}

fn list(ranks: impl Iterator<Item = String>) -> String {
    ranks.collect::<Vec<_>>().join(", ")
}

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lost::Ranks { ranks, world_size } => match ranks.as_slice() {
                [(rank, age)] => write!(
                    f,
                    "rank {rank} of {world_size} stopped answering (its last heartbeat was \
                     {age:.1} s ago)"
                ),
                _ => write!(
                    f,
                    "ranks {} of {world_size} stopped answering (their last heartbeats were {} \
                     s ago)",
                    list(ranks.iter().map(|(r, _)| r.to_string())),
                    list(ranks.iter().map(|(_, a)| format!("{a:.1}"))),
                ),
            },
            Lost::Store { addr, port, world_size, message } => write!(
                f,
                "rank 0 of {world_size}, which serves the group's store at {addr}:{port}, \
                 stopped answering (the store: {message})"
            ),
            Lost::Unknown { stopping } if stopping.is_empty() => f.write_str(
                "another rank stopped (every rank's heartbeat still goes: a slow rank, or a \
                 network fault)",
            ),
            Lost::Unknown { stopping } => write!(
                f,
                "another rank stopped (ranks {} stopped on errors of their own)",
                list(stopping.iter().map(usize::to_string)),
            ),
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl ProcessGroup {
    /// After a failed collective: marks this rank as stopping, then watches the other ranks'
    /// heartbeats for [`WATCH`] and says which stopped. Rank 0, whose process serves the
    /// store, then waits (at most another two [`WATCH`]es) until every rank that is not lost
    /// has said it is stopping, so that their own look at the heartbeats still finds the
    /// store. Takes a few seconds; never longer than about `3 WATCH + 3 READ_TIMEOUT`.
    pub fn find_lost(&self) -> Lost {
        let raw = self.raw();
        let _ = raw.mark_stopping();
        let read_timeout = READ_TIMEOUT.min(self.timeout());
        let read = || {
            raw.heartbeats(self.world_size(), read_timeout).map_err(|message| Lost::Store {
                addr: self.master_addr().to_owned(),
                port: self.master_port(),
                world_size: self.world_size(),
                message,
            })
        };
        let watch = WATCH.min(self.timeout());
        let result = read().and_then(|before| {
            std::thread::sleep(watch);
            let after = read()?;
            let now = now_ms();
            let mut lost = Vec::new();
            let mut stopping = Vec::new();
            for (rank, (&(t0, _), &(t1, stops))) in before.iter().zip(&after).enumerate() {
                if rank == self.rank() {
                    continue;
                }
                if stops {
                    stopping.push(rank);
                } else if t0 == t1 {
                    lost.push((rank, (now - t1).max(0) as f64 / 1e3));
                }
            }
            Ok(if lost.is_empty() {
                Lost::Unknown { stopping }
            } else {
                Lost::Ranks { ranks: lost, world_size: self.world_size() }
            })
        });
        let lost = result.unwrap_or_else(|store_gone| store_gone);
        if self.rank() == 0 {
            self.wait_for_the_others_to_stop(&lost.ranks(), 2 * watch, read_timeout);
        }
        lost
    }

    /// Rank 0's wait, at most `limit`, until every rank but `lost` marks itself stopping.
    fn wait_for_the_others_to_stop(&self, lost: &[usize], limit: Duration, read_timeout: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let Ok(beats) = self.raw().heartbeats(self.world_size(), read_timeout) else {
                return;
            };
            let done = beats
                .iter()
                .enumerate()
                .all(|(rank, &(_, stops))| stops || rank == self.rank() || lost.contains(&rank));
            if done {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_lost_ranks_and_the_age_of_their_last_heartbeat() {
        let one = Lost::Ranks { ranks: vec![(1, 4.26)], world_size: 2 };
        assert_eq!(
            one.to_string(),
            "rank 1 of 2 stopped answering (its last heartbeat was 4.3 s ago)"
        );
        assert_eq!(one.ranks(), [1]);
        let two = Lost::Ranks { ranks: vec![(2, 3.0), (5, 3.5)], world_size: 8 };
        assert_eq!(
            two.to_string(),
            "ranks 2, 5 of 8 stopped answering (their last heartbeats were 3.0, 3.5 s ago)"
        );
        let store = Lost::Store {
            addr: "10.0.0.7".into(),
            port: 29500,
            world_size: 4,
            message: "Connection refused".into(),
        };
        assert!(store.to_string().starts_with("rank 0 of 4, which serves"), "{store}");
        assert!(store.to_string().contains("10.0.0.7:29500"), "{store}");
        assert_eq!(store.ranks(), [0]);
        let unknown = Lost::Unknown { stopping: vec![3] };
        assert!(unknown.to_string().contains("ranks 3 stopped on errors"), "{unknown}");
        assert!(unknown.ranks().is_empty());
    }
}
