//! How a playback session went, computed from the CMCD records stored for it.
//!
//! The store keeps each record once, keyed by its sequence number (or its time), so a retried
//! batch changes nothing and the stored set is the same whatever order batches arrived in. Every
//! figure here is a function of that set alone, ordered by the records' own timestamps — so
//! aggregates never depend on arrival order.
//!
//! Thresholds follow `reference/playback-telemetry.md` §8 (Mux Data's score curves, Krishnan &
//! Sitaraman's abandonment figures, Conviva's buffering ratio); none is a standard, each rule
//! names itself in the verdict.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::cmcd::{EventKind, PlayerState, Record};

/// The lowest rung of the ladder (360p, ~500 kbps): a median throughput below it means the
/// network cannot sustain video at all.
pub const LOWEST_RUNG_KBPS: u32 = 500;
/// The window the *current* verdict looks at (what alerts follow), before the latest record.
pub const CURRENT_WINDOW_MS: i64 = 60_000;
/// A gap between two records longer than this counts as this much (a player that went silent
/// — tab closed, app backgrounded — is not watching or stalling for the whole gap).
pub const MAX_GAP_MS: i64 = 60_000;

/// Startup over this is degraded (Mux: 2 s scores 80; abandonment starts at 2 s).
const STARTUP_DEGRADED_MS: u32 = 2_000;
/// Startup over this is poor (Mux: 8 s scores 50).
const STARTUP_POOR_MS: u32 = 8_000;
/// Rebuffering ratios (stall time / (watch + stall)).
const REBUFFER_DEGRADED: f64 = 0.01;
const REBUFFER_POOR: f64 = 0.05;
/// Stalls in a session from which it is degraded (Mux's smoothness drops fast from 2).
const STALLS_DEGRADED: u32 = 2;

/// The verdict on a session or a window of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Good,
    Degraded,
    Poor,
}

/// A verdict and the rule that made it (`"rebuffer_ratio 3.1% >= 1%"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    pub verdict: Verdict,
    pub rule: String,
}

/// Nearest-rank percentiles of measured throughput.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    pub p10: u32,
    pub p50: u32,
    pub p90: u32,
}

/// Time spent playing at one encoded bitrate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RungTime {
    pub bitrate_kbps: u32,
    pub ms: u64,
    /// Of all the time played (0..=1).
    pub share: f64,
}

/// The figures of a session (or of its current window).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quality {
    /// Starting to playing, ms (`msd` when the player sends it).
    pub startup_ms: Option<u32>,
    pub throughput_kbps: Option<Percentiles>,
    /// Highest bitrate first.
    pub rungs: Vec<RungTime>,
    pub bitrate_switches: u32,
    pub rebuffer_count: u32,
    pub rebuffer_ms: u64,
    pub rebuffer_ratio: f64,
    pub watch_ms: u64,
    pub errors: u32,
    pub fatal_errors: u32,
    pub reports: u32,
    /// The lowest rung the player saw (`lb`), else the ladder's.
    pub lowest_rung_kbps: u32,
}

/// Records of one session by their store key.
pub type Records = BTreeMap<String, Record>;

/// The store key of a record: its sequence number, else its time; `None` for a record with
/// neither (it cannot be deduplicated and is not stored).
pub fn record_key(record: &Record) -> Option<String> {
    match (record.sn, record.ts) {
        (Some(sn), _) => Some(format!("s{sn:010}")),
        (None, Some(ts)) => Some(format!("t{ts:013}")),
        (None, None) => None,
    }
}

/// Records in time order (records without a time last, by key: they still count for
/// throughput and errors, but not for durations).
fn timeline(records: &Records) -> Vec<(&str, &Record)> {
    let mut v: Vec<(&str, &Record)> = records.iter().map(|(k, r)| (k.as_str(), r)).collect();
    v.sort_by(|(ka, a), (kb, b)| {
        (a.ts.is_none(), a.ts, a.sn, *ka).cmp(&(b.ts.is_none(), b.ts, b.sn, *kb))
    });
    v
}

fn percentiles(mut values: Vec<u32>) -> Option<Percentiles> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = |p: usize| values[((p * values.len()).div_ceil(100)).max(1) - 1];
    Some(Percentiles {
        p10: rank(10),
        p50: rank(50),
        p90: rank(90),
    })
}

/// The figures of the records whose time is at or after `from` (all with `None`); the state
/// and bitrate in force at `from` carry in from the records before it.
fn measure(records: &Records, from: Option<i64>) -> Quality {
    let line = timeline(records);
    let in_window = |r: &Record| match (from, r.ts) {
        (None, _) => true,
        (Some(f), Some(ts)) => ts >= f,
        (Some(_), None) => false,
    };
    let mut state: Option<PlayerState> = None;
    let mut bitrate: Option<u32> = None;
    let mut last_ts: Option<i64> = None;
    let mut rung_ms: BTreeMap<u32, u64> = BTreeMap::new();
    let (mut watch_ms, mut stall_ms, mut reported_stall_ms) = (0u64, 0u64, 0u64);
    let (mut stalls, mut switches, mut errors, mut fatal, mut reports) = (0u32, 0u32, 0, 0, 0);
    let mut throughput = Vec::new();
    let mut lowest = None::<u32>;
    let (mut first_start, mut first_play, mut msd) = (None::<i64>, None::<i64>, None::<u32>);

    for (_, r) in &line {
        let counted = in_window(r);
        // Time since the previous record belongs to the state and rung in force before this one.
        if let (Some(prev), Some(ts)) = (last_ts, r.ts) {
            let start = from.map_or(prev, |f| prev.max(f));
            let dt = (ts - start).clamp(0, MAX_GAP_MS) as u64;
            if counted && dt > 0 {
                match state {
                    Some(PlayerState::Playing) => {
                        watch_ms += dt;
                        if let Some(br) = bitrate {
                            *rung_ms.entry(br).or_default() += dt;
                        }
                    }
                    Some(PlayerState::Rebuffering) => stall_ms += dt,
                    _ => {}
                }
            }
        }
        if r.ts.is_some() {
            last_ts = r.ts;
        }
        if let Some(br) = r.bitrate_kbps {
            if counted && bitrate.is_some_and(|b| b != br) {
                switches += 1;
            }
            bitrate = Some(br);
        }
        if let Some(next) = r.state {
            if counted && next == PlayerState::Rebuffering && state != Some(next) {
                stalls += 1;
            }
            if let Some(ts) = r.ts {
                if next == PlayerState::Starting && first_start.is_none() {
                    first_start = Some(ts);
                }
                if next == PlayerState::Playing && first_play.is_none() {
                    first_play = Some(ts);
                }
            }
            state = Some(next);
        }
        if !counted {
            continue;
        }
        reports += 1;
        if let Some(kbps) = r.throughput_kbps {
            throughput.push(kbps);
        }
        if let Some(lb) = r.lowest_kbps.filter(|lb| *lb > 0) {
            lowest = Some(lowest.map_or(lb, |l| l.min(lb)));
        }
        if let Some(ms) = r.startup_ms {
            msd = Some(msd.map_or(ms, |m| m.min(ms)));
        }
        reported_stall_ms += r.stall_ms.iter().map(|&ms| u64::from(ms)).sum::<u64>();
        if r.event == Some(EventKind::Error) || !r.errors.is_empty() {
            errors += 1;
        }
        if r.state == Some(PlayerState::FatalError) {
            fatal += 1;
        }
    }
    // Players that report stall durations (`bsd`) but no rebuffering state still count.
    if stall_ms == 0 {
        stall_ms = reported_stall_ms;
    }
    let startup_ms = msd.or(match (first_start, first_play) {
        (Some(s), Some(p)) if p >= s && from.is_none_or(|f| s >= f) => u32::try_from(p - s).ok(),
        _ => None,
    });
    let total: u64 = rung_ms.values().sum();
    let rungs = rung_ms
        .into_iter()
        .rev()
        .map(|(bitrate_kbps, ms)| RungTime {
            bitrate_kbps,
            ms,
            share: if total == 0 {
                0.0
            } else {
                ms as f64 / total as f64
            },
        })
        .collect();
    let rebuffer_ratio = match watch_ms + stall_ms {
        0 => 0.0,
        all => stall_ms as f64 / all as f64,
    };
    Quality {
        startup_ms,
        throughput_kbps: percentiles(throughput),
        rungs,
        bitrate_switches: switches,
        rebuffer_count: stalls,
        rebuffer_ms: stall_ms,
        rebuffer_ratio,
        watch_ms,
        errors,
        fatal_errors: fatal,
        reports,
        lowest_rung_kbps: lowest.unwrap_or(LOWEST_RUNG_KBPS),
    }
}

fn pct(ratio: f64) -> String {
    format!("{:.1}%", ratio * 100.0)
}

impl Quality {
    /// The whole session.
    pub fn of_session(records: &Records) -> Quality {
        measure(records, None)
    }

    /// The last [`CURRENT_WINDOW_MS`] before the latest record: what the viewer sees now.
    pub fn of_current_window(records: &Records) -> Quality {
        let latest = records.values().filter_map(|r| r.ts).max();
        measure(records, latest.map(|t| t - CURRENT_WINDOW_MS))
    }

    /// The session's verdict: any fatal error, heavy rebuffering or a very slow start is poor;
    /// noticeable rebuffering, repeated stalls, a slow start or a network below the lowest rung
    /// is degraded.
    pub fn session_verdict(&self) -> Judgement {
        let judge = |verdict, rule: String| Judgement { verdict, rule };
        if let Some(poor) = self.failing() {
            return poor;
        }
        if let Some(s) = self.startup_ms.filter(|s| *s >= STARTUP_POOR_MS) {
            return judge(
                Verdict::Poor,
                format!("startup_ms {s} >= {STARTUP_POOR_MS}"),
            );
        }
        if self.rebuffer_ratio >= REBUFFER_DEGRADED {
            return judge(
                Verdict::Degraded,
                format!(
                    "rebuffer_ratio {} >= {}",
                    pct(self.rebuffer_ratio),
                    pct(REBUFFER_DEGRADED)
                ),
            );
        }
        if self.rebuffer_count >= STALLS_DEGRADED {
            return judge(
                Verdict::Degraded,
                format!(
                    "rebuffer_count {} >= {STALLS_DEGRADED}",
                    self.rebuffer_count
                ),
            );
        }
        if let Some(s) = self.startup_ms.filter(|s| *s > STARTUP_DEGRADED_MS) {
            return judge(
                Verdict::Degraded,
                format!("startup_ms {s} > {STARTUP_DEGRADED_MS}"),
            );
        }
        if let Some(rule) = self.network_rule() {
            return judge(Verdict::Degraded, rule);
        }
        judge(Verdict::Good, "no threshold crossed".into())
    }

    /// The current window's verdict (what `playback.degraded` / `playback.recovered` follow):
    /// a fatal error or heavy rebuffering is poor; any stall, a network below the lowest rung,
    /// or most of the window played at the lowest rung while higher ones exist is degraded.
    pub fn current_verdict(&self) -> Judgement {
        let judge = |verdict, rule: String| Judgement { verdict, rule };
        if let Some(poor) = self.failing() {
            return poor;
        }
        if self.rebuffer_count > 0 || self.rebuffer_ms > 0 {
            return judge(
                Verdict::Degraded,
                format!(
                    "rebuffer_count {} > 0 in the last minute",
                    self.rebuffer_count.max(1)
                ),
            );
        }
        if let Some(rule) = self.network_rule() {
            return judge(Verdict::Degraded, rule);
        }
        let lowest = self.lowest_rung_kbps;
        let at_lowest: f64 = self
            .rungs
            .iter()
            .filter(|r| r.bitrate_kbps <= lowest)
            .map(|r| r.share)
            .sum();
        let higher_exist = self.rungs.iter().any(|r| r.bitrate_kbps > lowest) || at_lowest < 1.0;
        if self.watch_ms > 0 && at_lowest > 0.5 && higher_exist {
            return judge(
                Verdict::Degraded,
                format!("{} of the last minute at the lowest rung", pct(at_lowest)),
            );
        }
        judge(Verdict::Good, "no threshold crossed".into())
    }

    /// Poor in any window: a fatal error or heavy rebuffering.
    fn failing(&self) -> Option<Judgement> {
        let rule = if self.fatal_errors > 0 {
            format!("fatal_errors {} > 0", self.fatal_errors)
        } else if self.rebuffer_ratio >= REBUFFER_POOR {
            format!(
                "rebuffer_ratio {} >= {}",
                pct(self.rebuffer_ratio),
                pct(REBUFFER_POOR)
            )
        } else {
            return None;
        };
        Some(Judgement {
            verdict: Verdict::Poor,
            rule,
        })
    }

    fn network_rule(&self) -> Option<String> {
        let p50 = self.throughput_kbps?.p50;
        (p50 < self.lowest_rung_kbps).then(|| {
            format!(
                "throughput_p50 {p50} kbps < lowest rung {} kbps",
                self.lowest_rung_kbps
            )
        })
    }
}

/// A change of a session's current verdict worth telling the platform about.
#[derive(Debug, Clone, PartialEq)]
pub enum Alert {
    /// The last minute went from good to degraded or poor.
    Degraded(Judgement),
    /// The last minute is good again after being degraded or poor.
    Recovered(Judgement),
}

/// The alert a report batch causes: the current verdict before (`None`: the session's first
/// batch, taken as good) against after.
pub fn alert(old: Option<&Records>, new: &Records) -> Option<Alert> {
    let before = old.map_or(Verdict::Good, |r| {
        Quality::of_current_window(r).current_verdict().verdict
    });
    let after = Quality::of_current_window(new).current_verdict();
    match (before, after.verdict) {
        (Verdict::Good, Verdict::Degraded | Verdict::Poor) => Some(Alert::Degraded(after)),
        (Verdict::Degraded | Verdict::Poor, Verdict::Good) => Some(Alert::Recovered(after)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(sn: u32, ts: i64) -> Record {
        Record {
            sn: Some(sn),
            ts: Some(ts),
            ..Record::default()
        }
    }

    fn state(sn: u32, ts: i64, s: PlayerState) -> Record {
        Record {
            state: Some(s),
            event: Some(EventKind::PlayState),
            ..rec(sn, ts)
        }
    }

    fn beat(sn: u32, ts: i64, br: u32, mtp: u32) -> Record {
        Record {
            event: Some(EventKind::Interval),
            bitrate_kbps: Some(br),
            throughput_kbps: Some(mtp),
            lowest_kbps: Some(500),
            top_kbps: Some(5000),
            ..rec(sn, ts)
        }
    }

    fn records(list: Vec<Record>) -> Records {
        list.into_iter()
            .map(|r| (record_key(&r).unwrap(), r))
            .collect()
    }

    const T: i64 = 1_764_752_400_000;

    #[test]
    fn a_smooth_session() {
        let r = records(vec![
            state(1, T, PlayerState::Starting),
            state(2, T + 800, PlayerState::Playing),
            beat(3, T + 10_800, 5000, 9000),
            beat(4, T + 20_800, 5000, 8000),
            state(5, T + 30_800, PlayerState::Ended),
        ]);
        let q = Quality::of_session(&r);
        assert_eq!(q.startup_ms, Some(800));
        assert_eq!(q.watch_ms, 30_000);
        assert_eq!(q.rebuffer_count, 0);
        // The first 10 s played before any bitrate was known.
        assert_eq!(
            q.rungs,
            vec![RungTime {
                bitrate_kbps: 5000,
                ms: 20_000,
                share: 1.0
            }]
        );
        assert_eq!(q.throughput_kbps.unwrap().p50, 8000);
        assert_eq!(q.session_verdict().verdict, Verdict::Good);
        assert_eq!(
            Quality::of_current_window(&r).current_verdict().verdict,
            Verdict::Good
        );
    }

    #[test]
    fn stalls_at_the_lowest_rung_are_degraded_then_recover() {
        let mut list = vec![
            state(1, T, PlayerState::Starting),
            state(2, T + 1_000, PlayerState::Playing),
            beat(3, T + 5_000, 500, 300),
            state(4, T + 6_000, PlayerState::Rebuffering),
            state(5, T + 9_000, PlayerState::Playing),
            beat(6, T + 15_000, 500, 400),
        ];
        let q = Quality::of_session(&records(list.clone()));
        assert_eq!(q.rebuffer_count, 1);
        assert_eq!(q.rebuffer_ms, 3_000);
        assert_eq!(q.bitrate_switches, 0);
        let j = q.session_verdict();
        assert_eq!(j.verdict, Verdict::Poor, "{}", j.rule);
        assert!(j.rule.starts_with("rebuffer_ratio"), "{}", j.rule);
        let now = Quality::of_current_window(&records(list.clone()));
        assert_ne!(now.current_verdict().verdict, Verdict::Good);

        // Two minutes of smooth top-rung playback later: the window is good again.
        for (i, s) in (0..13).enumerate() {
            list.push(beat(7 + i as u32, T + 20_000 + s * 10_000, 5000, 9000));
        }
        let now = Quality::of_current_window(&records(list.clone()));
        assert_eq!(now.rebuffer_count, 0);
        assert_eq!(now.current_verdict().verdict, Verdict::Good, "{:?}", now);
        let whole = Quality::of_session(&records(list));
        assert_eq!(whole.bitrate_switches, 1);
        assert_eq!(whole.rungs[0].bitrate_kbps, 5000);
        assert!(whole.rungs[1].share > 0.0);
    }

    #[test]
    fn a_network_below_the_lowest_rung_and_fatal_errors() {
        let r = records(vec![
            state(1, T, PlayerState::Playing),
            beat(2, T + 10_000, 500, 200),
            beat(3, T + 20_000, 500, 250),
        ]);
        let j = Quality::of_session(&r).session_verdict();
        assert_eq!(j.verdict, Verdict::Degraded);
        assert!(j.rule.starts_with("throughput_p50 200"), "{}", j.rule);
        let mut failing = r.clone();
        let f = Record {
            errors: vec!["manifestLoadError".into()],
            event: Some(EventKind::Error),
            ..state(4, T + 21_000, PlayerState::FatalError)
        };
        failing.insert(record_key(&f).unwrap(), f);
        let q = Quality::of_session(&failing);
        assert_eq!((q.errors, q.fatal_errors), (1, 1));
        assert_eq!(q.session_verdict().verdict, Verdict::Poor);
    }

    #[test]
    fn alerts_fire_on_crossings_only() {
        let good = records(vec![
            state(1, T, PlayerState::Playing),
            beat(2, T + 10_000, 5000, 9000),
        ]);
        assert_eq!(alert(None, &good), None);
        let mut stalled = good.clone();
        let r = state(3, T + 12_000, PlayerState::Rebuffering);
        stalled.insert(record_key(&r).unwrap(), r);
        assert!(matches!(
            alert(Some(&good), &stalled),
            Some(Alert::Degraded(_))
        ));
        assert_eq!(
            alert(Some(&stalled), &stalled),
            None,
            "still degraded: no new alert"
        );
        let mut recovered = stalled.clone();
        for i in 0..8 {
            let r = beat(4 + i, T + 14_000 + i64::from(i) * 10_000, 5000, 9000);
            recovered.insert(record_key(&r).unwrap(), r);
        }
        let p = state(20, T + 13_000, PlayerState::Playing);
        recovered.insert(record_key(&p).unwrap(), p);
        assert!(matches!(
            alert(Some(&stalled), &recovered),
            Some(Alert::Recovered(_))
        ));
    }

    #[test]
    fn long_silences_count_as_at_most_a_minute() {
        let r = records(vec![
            state(1, T, PlayerState::Playing),
            beat(2, T + 3_600_000, 800, 900),
        ]);
        assert_eq!(Quality::of_session(&r).watch_ms, MAX_GAP_MS as u64);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let p = percentiles((1..=10).map(|n| n * 100).collect()).unwrap();
        assert_eq!((p.p10, p.p50, p.p90), (100, 500, 900));
        let one = percentiles(vec![7]).unwrap();
        assert_eq!((one.p10, one.p50, one.p90), (7, 7, 7));
        assert_eq!(percentiles(Vec::new()), None);
    }

    #[test]
    fn keys_order_by_sequence_and_records_without_either_are_not_kept() {
        assert_eq!(record_key(&rec(9, T)).unwrap(), "s0000000009");
        assert!(record_key(&rec(9, T)) < record_key(&rec(10, T)));
        let untimed = Record {
            ts: Some(T),
            ..Record::default()
        };
        assert_eq!(record_key(&untimed).unwrap(), "t1764752400000");
        assert_eq!(record_key(&Record::default()), None);
    }
}
