//! Who this process is in a multi-process run, read from the environment the launcher set:
//! [`Launch::from_env`].
//!
//! Two launchers are understood, checked in this order:
//!
//! | launcher | rank | local rank | world size | master address | master port |
//! |----------|------|------------|------------|----------------|-------------|
//! | torchrun | `RANK` | `LOCAL_RANK` (default `RANK`) | `WORLD_SIZE` | `MASTER_ADDR` | `MASTER_PORT` |
//! | Slurm (`srun`) | `SLURM_PROCID` | `SLURM_LOCALID` | `SLURM_NTASKS` | `MASTER_ADDR`, else the first host of `SLURM_JOB_NODELIST` (or `SLURM_NODELIST`) | `MASTER_PORT`, else [`slurm_default_port`] of `SLURM_JOB_ID` |
//!
//! torchrun counts as present when `RANK` or `WORLD_SIZE` is set, Slurm when `SLURM_PROCID`
//! is. With neither, or a world of one, the process runs alone: no group, nothing changes.
//! Slurm sets `SLURM_PROCID` and `SLURM_NTASKS` in a batch script too, outside any `srun`
//! step: start the trainer with `srun` there, or every copy believes it is one of many ranks
//! and waits for the others until the group's timeout.

use std::fmt;

/// The launcher a [`Launch`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// `torchrun` (or anything that sets its variables).
    Torchrun,
    /// Slurm's `srun`.
    Slurm,
}

impl fmt::Display for Launcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Launcher::Torchrun => "torchrun",
            Launcher::Slurm => "Slurm",
        })
    }
}

/// This process's place in a run of `world_size` processes, and where rank 0 serves the
/// rendezvous store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Which launcher set the variables.
    pub launcher: Launcher,
    /// Global rank, `0..world_size`.
    pub rank: usize,
    /// Rank on this node: the GPU index to use.
    pub local_rank: usize,
    /// Number of processes in the run (at least 2, except from [`Launch::from_env_any`]).
    pub world_size: usize,
    /// Host of rank 0, where the rendezvous store listens.
    pub master_addr: String,
    /// Port of the rendezvous store.
    pub master_port: u16,
}

/// The launcher's variables are set but do not describe a run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    /// A variable the launcher always sets is missing.
    #[error("{launcher} launch: {var} is not set")]
    Missing {
        /// The launcher whose other variables were found.
        launcher: Launcher,
        /// The missing variable.
        var: &'static str,
    },
    /// A variable holds something other than a non-negative integer (or a port).
    #[error("{var}={value:?} is not a valid {what}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What it should hold.
        what: &'static str,
    },
    /// The rank is not below the world size.
    #[error("{rank_var}={rank} is outside a world of {world_size} ({world_var})")]
    RankOutOfRange {
        /// The rank variable.
        rank_var: &'static str,
        /// Its value.
        rank: usize,
        /// The world size variable.
        world_var: &'static str,
        /// Its value.
        world_size: usize,
    },
    /// A world of zero processes.
    #[error("{var}=0: a run needs at least one process")]
    EmptyWorld {
        /// The world size variable.
        var: &'static str,
    },
    /// The Slurm node list has no first host to serve as master.
    #[error("{var}={value:?} has no first host name")]
    BadNodeList {
        /// The node list variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
}

impl Launch {
    /// The run described by this process's environment; `Ok(None)` for a single process (no
    /// launcher variables, or a world of one).
    pub fn from_env() -> Result<Option<Launch>, LaunchError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// As [`Launch::from_env`], reading variables through `var` (tests pass a map).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Launch>, LaunchError> {
        Ok(Self::from_vars_any(var)?.filter(|launch| launch.world_size > 1))
    }

    /// The launcher's description of this process, a world of one included (`cvrl-train
    /// --dist-always`: the data-parallel path with one rank); `Ok(None)` without launcher
    /// variables.
    pub fn from_env_any() -> Result<Option<Launch>, LaunchError> {
        Self::from_vars_any(|name| std::env::var(name).ok())
    }

    /// As [`Launch::from_env_any`], reading variables through `var`.
    pub fn from_vars_any(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Launch>, LaunchError> {
        if var("RANK").is_some() || var("WORLD_SIZE").is_some() {
            Self::torchrun(&var).map(Some)
        } else if var("SLURM_PROCID").is_some() {
            Self::slurm(&var).map(Some)
        } else {
            Ok(None)
        }
    }

    fn torchrun(var: &impl Fn(&str) -> Option<String>) -> Result<Launch, LaunchError> {
        let launcher = Launcher::Torchrun;
        let required = |name| var(name).ok_or(LaunchError::Missing { launcher, var: name });
        let world_size = world("WORLD_SIZE", &required("WORLD_SIZE")?)?;
        let rank = ranked("RANK", &required("RANK")?, "WORLD_SIZE", world_size)?;
        let local_rank = match var("LOCAL_RANK") {
            Some(v) => number("LOCAL_RANK", &v)?,
            None => rank,
        };
        Ok(Launch {
            launcher,
            rank,
            local_rank,
            world_size,
            master_addr: required("MASTER_ADDR")?,
            master_port: port("MASTER_PORT", &required("MASTER_PORT")?)?,
        })
    }

    fn slurm(var: &impl Fn(&str) -> Option<String>) -> Result<Launch, LaunchError> {
        let launcher = Launcher::Slurm;
        let required = |name| var(name).ok_or(LaunchError::Missing { launcher, var: name });
        let world_size = world("SLURM_NTASKS", &required("SLURM_NTASKS")?)?;
        let rank = ranked("SLURM_PROCID", &required("SLURM_PROCID")?, "SLURM_NTASKS", world_size)?;
        let local_rank = number("SLURM_LOCALID", &required("SLURM_LOCALID")?)?;
        let master_addr = match var("MASTER_ADDR") {
            Some(addr) => addr,
            None => {
                let (list_var, list) = ["SLURM_JOB_NODELIST", "SLURM_NODELIST"]
                    .into_iter()
                    .find_map(|name| var(name).map(|v| (name, v)))
                    .ok_or(LaunchError::Missing { launcher, var: "SLURM_JOB_NODELIST" })?;
                first_host(&list).ok_or(LaunchError::BadNodeList { var: list_var, value: list })?
            }
        };
        let master_port = match var("MASTER_PORT") {
            Some(p) => port("MASTER_PORT", &p)?,
            None => {
                let job = required("SLURM_JOB_ID")?;
                slurm_default_port(number("SLURM_JOB_ID", &job)?)
            }
        };
        Ok(Launch { launcher, rank, local_rank, world_size, master_addr, master_port })
    }
}

/// The rendezvous port of a Slurm job that sets no `MASTER_PORT`: 20000 + job id mod 10000,
/// so two jobs sharing a node rarely collide and every task of one job agrees.
pub fn slurm_default_port(job_id: usize) -> u16 {
    // The modulus keeps the sum within 20000..30000, well inside u16.
    20_000 + (job_id % 10_000) as u16
}

fn number(var: &'static str, value: &str) -> Result<usize, LaunchError> {
    value.trim().parse().map_err(|_| LaunchError::Invalid {
        var,
        value: value.to_owned(),
        what: "non-negative integer",
    })
}

fn world(var: &'static str, value: &str) -> Result<usize, LaunchError> {
    match number(var, value)? {
        0 => Err(LaunchError::EmptyWorld { var }),
        n => Ok(n),
    }
}

fn ranked(
    rank_var: &'static str,
    value: &str,
    world_var: &'static str,
    world_size: usize,
) -> Result<usize, LaunchError> {
    let rank = number(rank_var, value)?;
    if rank >= world_size {
        return Err(LaunchError::RankOutOfRange { rank_var, rank, world_var, world_size });
    }
    Ok(rank)
}

fn port(var: &'static str, value: &str) -> Result<u16, LaunchError> {
    match value.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(LaunchError::Invalid { var, value: value.to_owned(), what: "TCP port" }),
    }
}

/// The first host of a Slurm host list: `node[01-04,07],gpu5` gives `node01`, `a,b` gives
/// `a`, `rack[1-2]-n[3-4]` gives `rack1-n3`. `None` when the list is empty or a bracket is
/// not closed.
pub fn first_host(list: &str) -> Option<String> {
    // The first entry ends at the first comma outside brackets.
    let mut depth = 0usize;
    let end = list
        .char_indices()
        .find(|&(_, c)| {
            match c {
                '[' => depth += 1,
                ']' => depth = depth.saturating_sub(1),
                _ => {}
            }
            c == ',' && depth == 0
        })
        .map_or(list.len(), |(i, _)| i);
    let entry = list[..end].trim();
    // Each bracketed range contributes its first value, zero padding kept.
    let mut host = String::new();
    let mut rest = entry;
    while let Some(open) = rest.find('[') {
        let close = open + rest[open..].find(']')?;
        host.push_str(&rest[..open]);
        let first = rest[open + 1..close].split(',').next()?.split('-').next()?.trim();
        if first.is_empty() {
            return None;
        }
        host.push_str(first);
        rest = &rest[close + 1..];
    }
    if rest.contains(']') {
        return None;
    }
    host.push_str(rest);
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn launch(vars: &[(&str, &str)]) -> Result<Option<Launch>, LaunchError> {
        let map: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Launch::from_vars(|name| map.get(name).cloned())
    }

    const TORCHRUN: [(&str, &str); 5] = [
        ("RANK", "3"),
        ("LOCAL_RANK", "1"),
        ("WORLD_SIZE", "4"),
        ("MASTER_ADDR", "10.0.0.7"),
        ("MASTER_PORT", "29500"),
    ];

    #[test]
    fn no_launcher_is_a_single_process() {
        assert_eq!(launch(&[("PATH", "/bin")]), Ok(None));
    }

    #[test]
    fn torchrun_variables() {
        let got = launch(&TORCHRUN).unwrap().unwrap();
        assert_eq!(
            got,
            Launch {
                launcher: Launcher::Torchrun,
                rank: 3,
                local_rank: 1,
                world_size: 4,
                master_addr: "10.0.0.7".into(),
                master_port: 29500,
            }
        );
        // Without LOCAL_RANK, one node is assumed.
        let got = launch(&[TORCHRUN[0], TORCHRUN[2], TORCHRUN[3], TORCHRUN[4]]).unwrap().unwrap();
        assert_eq!(got.local_rank, 3);
    }

    #[test]
    fn a_world_of_one_is_a_single_process_unless_asked_for() {
        let vars = [("RANK", "0"), ("WORLD_SIZE", "1"), TORCHRUN[3], TORCHRUN[4]];
        assert_eq!(launch(&vars), Ok(None));
        let map: HashMap<&str, &str> = vars.into_iter().collect();
        let any = Launch::from_vars_any(|name| map.get(name).map(|v| v.to_string()));
        let one = any.unwrap().expect("a launch of one");
        assert_eq!((one.rank, one.world_size, one.master_port), (0, 1, 29500));
        assert_eq!(Launch::from_vars_any(|_| None), Ok(None));
    }

    #[test]
    fn torchrun_errors_name_the_variable() {
        let missing = launch(&[TORCHRUN[0], TORCHRUN[2], TORCHRUN[4]]).unwrap_err();
        assert_eq!(
            missing,
            LaunchError::Missing { launcher: Launcher::Torchrun, var: "MASTER_ADDR" }
        );
        assert!(missing.to_string().contains("MASTER_ADDR"));

        let bad = launch(&[("RANK", "x"), TORCHRUN[2], TORCHRUN[3], TORCHRUN[4]]).unwrap_err();
        assert!(matches!(bad, LaunchError::Invalid { var: "RANK", .. }), "{bad}");

        let out = launch(&[("RANK", "4"), TORCHRUN[2], TORCHRUN[3], TORCHRUN[4]]).unwrap_err();
        assert_eq!(
            out,
            LaunchError::RankOutOfRange {
                rank_var: "RANK",
                rank: 4,
                world_var: "WORLD_SIZE",
                world_size: 4
            }
        );
        let zero = launch(&[("RANK", "0"), ("WORLD_SIZE", "0")]).unwrap_err();
        assert_eq!(zero, LaunchError::EmptyWorld { var: "WORLD_SIZE" });
        let port = launch(&[TORCHRUN[0], TORCHRUN[2], TORCHRUN[3], ("MASTER_PORT", "70000")]);
        assert!(matches!(port, Err(LaunchError::Invalid { var: "MASTER_PORT", .. })));
    }

    const SLURM: [(&str, &str); 5] = [
        ("SLURM_PROCID", "5"),
        ("SLURM_LOCALID", "1"),
        ("SLURM_NTASKS", "8"),
        ("SLURM_JOB_NODELIST", "gpu[03-06],cpu01"),
        ("SLURM_JOB_ID", "123456"),
    ];

    #[test]
    fn slurm_variables_with_master_from_the_node_list() {
        let got = launch(&SLURM).unwrap().unwrap();
        assert_eq!(
            got,
            Launch {
                launcher: Launcher::Slurm,
                rank: 5,
                local_rank: 1,
                world_size: 8,
                master_addr: "gpu03".into(),
                master_port: 23456,
            }
        );
    }

    #[test]
    fn master_variables_override_slurm_and_the_old_list_name_works() {
        let mut vars = SLURM.to_vec();
        vars.extend([("MASTER_ADDR", "head"), ("MASTER_PORT", "1234")]);
        let got = launch(&vars).unwrap().unwrap();
        assert_eq!((got.master_addr.as_str(), got.master_port), ("head", 1234));

        let vars = [SLURM[0], SLURM[1], SLURM[2], SLURM[4], ("SLURM_NODELIST", "n7")];
        assert_eq!(launch(&vars).unwrap().unwrap().master_addr, "n7");
    }

    #[test]
    fn slurm_errors_name_the_variable() {
        let no_list = launch(&[SLURM[0], SLURM[1], SLURM[2], SLURM[4]]).unwrap_err();
        assert_eq!(
            no_list,
            LaunchError::Missing { launcher: Launcher::Slurm, var: "SLURM_JOB_NODELIST" }
        );
        let bad = launch(&[SLURM[0], SLURM[1], SLURM[2], SLURM[4], ("SLURM_NODELIST", "n[1-")]);
        assert!(matches!(bad, Err(LaunchError::BadNodeList { var: "SLURM_NODELIST", .. })));
        let no_local = launch(&[SLURM[0], SLURM[2], SLURM[3], SLURM[4]]).unwrap_err();
        assert_eq!(
            no_local,
            LaunchError::Missing { launcher: Launcher::Slurm, var: "SLURM_LOCALID" }
        );
        let out = launch(&[("SLURM_PROCID", "8"), SLURM[1], SLURM[2], SLURM[3], SLURM[4]]);
        assert!(matches!(out, Err(LaunchError::RankOutOfRange { rank: 8, .. })));
    }

    #[test]
    fn first_host_of_slurm_host_lists() {
        for (list, host) in [
            ("node01", "node01"),
            ("node[01-04]", "node01"),
            ("node[07,01-04]", "node07"),
            ("node[1-2],gpu[3-4]", "node1"),
            ("a,b,c", "a"),
            ("rack[1-2]-n[3-4]", "rack1-n3"),
            ("n[0009-0012]-ib", "n0009-ib"),
        ] {
            assert_eq!(first_host(list).as_deref(), Some(host), "{list}");
        }
        for bad in ["", "[", "node[1-2", "node[]", "node]1"] {
            assert_eq!(first_host(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn slurm_default_ports_stay_in_range() {
        assert_eq!(slurm_default_port(0), 20_000);
        assert_eq!(slurm_default_port(9_999), 29_999);
        assert_eq!(slurm_default_port(usize::MAX), 20_000 + (usize::MAX % 10_000) as u16);
    }
}
