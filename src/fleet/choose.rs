//! The ranking of hosts for one model (pure): among hosts that take calls and have the
//! model, those where it is loaded first (fewest of its calls in flight first, then the
//! lower expected time), then those with the free VRAM to load it (lower expected time
//! first: measured load time there plus measured speed), then the others that have it.
//! A host whose inventory is not known yet comes after every host known to have the
//! model; a host known not to have it is never ranked while another host has it or may
//! have it. Hosts that are down come last, only when no host that is up has the model.

/// Most hosts ranked for one call (more are ignored): the ranking lives on the stack.
pub const MAX_RANKED: usize = 16;

/// The hosts to try for one call, best first: a list on the stack (no allocation per
/// call), read as a slice of host positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostOrder {
    len: usize,
    hosts: [usize; MAX_RANKED],
}

impl HostOrder {
    /// Empties the list.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends a host (ignored once [`MAX_RANKED`] are listed).
    pub fn push(&mut self, index: usize) {
        if self.len < MAX_RANKED {
            self.hosts[self.len] = index;
            self.len += 1;
        }
    }

    /// Keeps the hosts for which `keep` says so, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(usize) -> bool) {
        let mut kept = 0;
        for read in 0..self.len {
            let index = self.hosts[read];
            if keep(index) {
                self.hosts[kept] = index;
                kept += 1;
            }
        }
        self.len = kept;
    }

    /// Puts a host first, the others after it (the last one drops off a full list).
    pub fn insert_first(&mut self, index: usize) {
        let len = self.len.min(MAX_RANKED - 1);
        self.hosts.copy_within(0..len, 1);
        self.hosts[0] = index;
        self.len = len + 1;
    }
}

impl std::ops::Deref for HostOrder {
    type Target = [usize];

    fn deref(&self) -> &[usize] {
        &self.hosts[..self.len]
    }
}

/// Whether the model fits in a host's free VRAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fit {
    /// The need and the free memory are known, and the need is not above it.
    Fits,
    /// The need is above the free memory.
    TooBig,
    /// One of the two is not known.
    #[default]
    Unknown,
}

/// What the ranking knows of one host for one model.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Candidate {
    /// The host's position.
    pub index: usize,
    /// It takes calls (healthy, or half-open).
    pub up: bool,
    /// It has the model installed; `None` while its inventory is unknown.
    pub has: Option<bool>,
    /// The model is loaded there.
    pub loaded: bool,
    /// The model's calls in flight there.
    pub inflight: u32,
    /// Whether the model fits in its free VRAM.
    pub fit: Fit,
    /// Expected time of a call there, ms (load time when not loaded, plus generation at
    /// the measured speed); `None` before it was measured there.
    pub expected_ms: Option<f64>,
}

impl Candidate {
    /// The tier: lower is better; `None` is never chosen.
    fn tier(&self) -> Option<u8> {
        match (self.up, self.has) {
            (true, Some(true)) if self.loaded => Some(0),
            (true, Some(true)) => Some(match self.fit {
                Fit::Fits => 1,
                Fit::Unknown => 2,
                Fit::TooBig => 3,
            }),
            (true, None) => Some(4),
            (false, Some(true) | None) => Some(5),
            (_, Some(false)) => None,
        }
    }

    fn expected(&self) -> f64 {
        self.expected_ms.unwrap_or(f64::INFINITY)
    }
}

/// Ranks `candidates` (reordering them) and writes the indices of the hosts to try, best
/// first, into `out`. When no host has the model (every inventory says no), the hosts
/// that are up come in configuration order, so the upstream gives its own answer
/// ("model not found", or a pull on demand).
pub fn rank(candidates: &mut [Candidate], out: &mut HostOrder) {
    let has_somewhere = candidates
        .iter()
        .any(|c| c.has != Some(false) && (c.up || c.has == Some(true)));
    if !has_somewhere {
        for c in candidates.iter().filter(|c| c.up) {
            out.push(c.index);
        }
        return;
    }
    // The order is total (the index breaks ties), so an unstable sort is as good, and
    // it never allocates.
    candidates.sort_unstable_by(|a, b| {
        let (ta, tb) = (a.tier().unwrap_or(u8::MAX), b.tier().unwrap_or(u8::MAX));
        ta.cmp(&tb).then_with(|| {
            if ta == 0 {
                // Loaded: spread by in-flight count, then the faster host.
                a.inflight
                    .cmp(&b.inflight)
                    .then_with(|| a.expected().total_cmp(&b.expected()))
            } else {
                a.expected()
                    .total_cmp(&b.expected())
                    .then_with(|| a.inflight.cmp(&b.inflight))
            }
            .then_with(|| a.index.cmp(&b.index))
        })
    });
    let any_up = candidates
        .iter()
        .any(|c| c.up && matches!(c.tier(), Some(t) if t < 5));
    for c in candidates.iter() {
        match c.tier() {
            Some(5) if any_up => {}
            Some(_) => out.push(c.index),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(index: usize) -> Candidate {
        Candidate {
            index,
            up: true,
            has: Some(true),
            ..Candidate::default()
        }
    }

    fn ranked(mut c: Vec<Candidate>) -> Vec<usize> {
        let mut out = HostOrder::default();
        rank(&mut c, &mut out);
        out.to_vec()
    }

    #[test]
    fn a_host_order_keeps_pushes_retains_and_puts_first() {
        let mut order = HostOrder::default();
        for i in 0..MAX_RANKED + 2 {
            order.push(i);
        }
        assert_eq!(order.len(), MAX_RANKED, "a full list takes no more");
        order.retain(|i| i % 2 == 1);
        assert_eq!(*order, [1, 3, 5, 7, 9, 11, 13, 15]);
        order.insert_first(4);
        assert_eq!(*order, [4, 1, 3, 5, 7, 9, 11, 13, 15]);
        order.clear();
        assert!(order.is_empty());
        order.insert_first(2);
        assert_eq!(*order, [2]);
    }

    #[test]
    fn a_host_with_the_model_loaded_comes_first() {
        let cold = host(0);
        let warm = Candidate {
            loaded: true,
            ..host(1)
        };
        assert_eq!(ranked(vec![cold, warm]), vec![1, 0]);
    }

    #[test]
    fn among_loaded_hosts_the_fewest_calls_in_flight_win() {
        let busy = Candidate {
            loaded: true,
            inflight: 2,
            expected_ms: Some(10.0),
            ..host(0)
        };
        let idle = Candidate {
            loaded: true,
            inflight: 1,
            expected_ms: Some(50.0),
            ..host(1)
        };
        assert_eq!(ranked(vec![busy, idle]), vec![1, 0]);
        // Equal counts: the faster host.
        let a = Candidate {
            expected_ms: Some(50.0),
            inflight: 1,
            ..busy
        };
        let b = Candidate {
            expected_ms: Some(10.0),
            ..idle
        };
        assert_eq!(ranked(vec![a, b]), vec![1, 0]);
    }

    #[test]
    fn a_host_where_it_fits_beats_one_where_it_does_not_and_lower_expected_time_wins() {
        let too_big = Candidate {
            fit: Fit::TooBig,
            expected_ms: Some(1.0),
            ..host(0)
        };
        let slow_fit = Candidate {
            fit: Fit::Fits,
            expected_ms: Some(900.0),
            ..host(1)
        };
        let fast_fit = Candidate {
            fit: Fit::Fits,
            expected_ms: Some(300.0),
            ..host(2)
        };
        let unknown = Candidate {
            fit: Fit::Unknown,
            ..host(3)
        };
        assert_eq!(
            ranked(vec![too_big, slow_fit, fast_fit, unknown]),
            vec![2, 1, 3, 0]
        );
    }

    #[test]
    fn a_host_without_the_model_is_never_chosen_while_one_with_it_is_up() {
        let without = Candidate {
            has: Some(false),
            ..host(0)
        };
        let with = host(1);
        assert_eq!(ranked(vec![without, with]), vec![1]);
        // Unknown inventory ranks after a known one, but is tried.
        let unknown = Candidate {
            has: None,
            ..host(2)
        };
        assert_eq!(ranked(vec![unknown, with, without]), vec![1, 2]);
    }

    #[test]
    fn down_hosts_come_only_when_no_host_that_is_up_has_it() {
        let down_with = Candidate {
            up: false,
            loaded: true,
            ..host(0)
        };
        let up_with = host(1);
        assert_eq!(ranked(vec![down_with, up_with]), vec![1]);
        let up_without = Candidate {
            has: Some(false),
            ..host(1)
        };
        assert_eq!(ranked(vec![down_with, up_without]), vec![0]);
    }

    #[test]
    fn a_model_no_host_has_goes_to_the_hosts_that_are_up_in_order() {
        let a = Candidate {
            has: Some(false),
            ..host(0)
        };
        let b = Candidate {
            has: Some(false),
            up: false,
            ..host(1)
        };
        let c = Candidate {
            has: Some(false),
            ..host(2)
        };
        assert_eq!(ranked(vec![a, b, c]), vec![0, 2]);
    }
}
