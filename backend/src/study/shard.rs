//! Scale-out: whole studies are assigned to shards by a stable hash of their id, so any number
//! of independent processes (Slurm array tasks, Kubernetes Indexed Job pods) split a study CSV
//! without coordinating, and `radlens merge` puts their run directories back together.

use sha2::{Digest, Sha256};

/// Shard `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// `I/N` with `0 <= I < N`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("--shard {s:?}: expected I/N with 0 <= I < N, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }

    /// The shard a scheduler assigned to this process, if any: Slurm job arrays
    /// (`SLURM_ARRAY_TASK_ID` of `SLURM_ARRAY_TASK_COUNT`) or a Kubernetes Indexed Job
    /// (`JOB_COMPLETION_INDEX`, with the count given as `RADLENS_SHARD_COUNT`).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let num = |k: &str| get(k).map(|v| v.trim().parse::<u32>().map_err(|_| format!("{k}={v:?} is not a number"))).transpose();
        if let (Some(index), Some(count)) = (num("SLURM_ARRAY_TASK_ID")?, num("SLURM_ARRAY_TASK_COUNT")?) {
            // Slurm arrays may start at an offset: SLURM_ARRAY_TASK_MIN.
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            return Self::parse(&format!("{}/{count}", index.saturating_sub(min))).map(Some);
        }
        if let Some(index) = num("JOB_COMPLETION_INDEX")? {
            let count =
                num("RADLENS_SHARD_COUNT")?.ok_or("JOB_COMPLETION_INDEX is set but RADLENS_SHARD_COUNT (the Job's completions) is not")?;
            return Self::parse(&format!("{index}/{count}")).map(Some);
        }
        Ok(None)
    }

    /// Whether `study_id` belongs to this shard: first 8 bytes of sha256(id), mod count.
    pub fn owns(&self, study_id: &str) -> bool {
        let h = Sha256::digest(study_id.as_bytes());
        let v = u64::from_be_bytes(h[..8].try_into().expect("8 bytes"));
        v % u64::from(self.count) == u64::from(self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_study_belongs_to_exactly_one_shard() {
        let ids: Vec<String> = (0..200).map(|i| format!("study-{i}")).collect();
        let shards: Vec<Shard> = (0..3).map(|i| Shard { index: i, count: 3 }).collect();
        for id in &ids {
            assert_eq!(shards.iter().filter(|s| s.owns(id)).count(), 1, "{id}");
        }
        // Roughly balanced.
        for s in &shards {
            let n = ids.iter().filter(|id| s.owns(id)).count();
            assert!((40..=95).contains(&n), "shard {} has {n}", s.index);
        }
    }

    #[test]
    fn schedulers_environment_is_read() {
        let env =
            |pairs: &'static [(&'static str, &'static str)]| move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        assert_eq!(
            Shard::from_env(env(&[("SLURM_ARRAY_TASK_ID", "2"), ("SLURM_ARRAY_TASK_COUNT", "4")])).unwrap(),
            Some(Shard { index: 2, count: 4 })
        );
        assert_eq!(
            Shard::from_env(env(&[("SLURM_ARRAY_TASK_ID", "5"), ("SLURM_ARRAY_TASK_COUNT", "4"), ("SLURM_ARRAY_TASK_MIN", "3")])).unwrap(),
            Some(Shard { index: 2, count: 4 })
        );
        assert_eq!(
            Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "1"), ("RADLENS_SHARD_COUNT", "3")])).unwrap(),
            Some(Shard { index: 1, count: 3 })
        );
        assert!(Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "1")])).is_err());
        assert_eq!(Shard::from_env(env(&[])).unwrap(), None);
        assert!(Shard::parse("3/3").is_err());
    }
}
