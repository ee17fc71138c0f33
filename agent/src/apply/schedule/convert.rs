//! Cron expressions ⇄ systemd calendar specs, so one `UPDATE_SCHEDULE` works with either.

use crate::context::Schedule;

pub(super) const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// An `OnCalendar=` value for a (validated) schedule. Cron fields become explicit lists, so
/// steps and ranges mean exactly what cron meant. One difference is kept as systemd has it:
/// cron ORs a restricted day-of-month with a restricted day-of-week, systemd ANDs them.
pub fn to_calendar(s: &Schedule) -> Result<String, String> {
    let cron = match s {
        Schedule::Calendar(c) => return Ok(c.clone()),
        Schedule::Cron(c) => c,
    };
    let short = match cron.as_str() {
        "@hourly" => Some("hourly"),
        "@daily" | "@midnight" => Some("daily"),
        "@weekly" => Some("weekly"),
        "@monthly" => Some("monthly"),
        "@yearly" | "@annually" => Some("yearly"),
        _ => None,
    };
    if let Some(s) = short {
        return Ok(s.to_string());
    }
    let f: Vec<&str> = cron.split_whitespace().collect();
    if f.len() != 5 {
        return Err(format!("{cron:?} is not a 5-field cron expression"));
    }
    let list =
        |field: &str, lo: u32, hi: u32, names: &[&str]| -> Result<Option<Vec<u32>>, String> {
            if field == "*" {
                return Ok(None);
            }
            expand(field, lo, hi, names).map(Some)
        };
    let join = |v: Option<Vec<u32>>, width: usize| match v {
        None => "*".to_string(),
        Some(v) => v
            .iter()
            .map(|n| format!("{n:0width$}"))
            .collect::<Vec<_>>()
            .join(","),
    };
    let minute = join(list(f[0], 0, 59, &[])?, 2);
    let hour = join(list(f[1], 0, 23, &[])?, 2);
    let dom = join(list(f[2], 1, 31, &[])?, 2);
    let month = join(list(f[3], 1, 12, &MONTH_NAMES)?, 2);
    let dow = list(f[4], 0, 7, &WEEKDAYS)?.map(|days| {
        let mut seen: Vec<u32> = days.iter().map(|d| d % 7).collect();
        seen.sort_unstable();
        seen.dedup();
        let names: Vec<&str> = seen.iter().map(|d| WEEKDAYS[*d as usize]).collect();
        format!("{} ", names.join(","))
    });
    Ok(format!(
        "{}*-{month}-{dom} {hour}:{minute}:00",
        dow.unwrap_or_default()
    ))
}

/// A cron field as the sorted values it selects.
fn expand(field: &str, lo: u32, hi: u32, names: &[&str]) -> Result<Vec<u32>, String> {
    let base = if names.len() == 12 { 1 } else { 0 };
    let value = |t: &str| -> Result<u32, String> {
        if let Some(p) = names.iter().position(|n| n.eq_ignore_ascii_case(t)) {
            return Ok(p as u32 + base);
        }
        t.parse::<u32>()
            .ok()
            .filter(|v| (lo..=hi).contains(v))
            .ok_or_else(|| format!("{t:?} is not in {lo}..{hi}"))
    };
    let mut out = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .map_err(|_| format!("bad step in {item:?}"))?,
            ),
            None => (item, 1),
        };
        let (a, b) = match range {
            "*" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                None if step > 1 => (value(r)?, hi),
                None => (value(r)?, value(r)?),
            },
        };
        out.extend((a..=b).step_by(step.max(1) as usize));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// A cron line for a schedule, for systems without systemd. Calendar specs are translated
/// when cron can say the same thing (shorthands, `[weekdays] [*-M-D] H:M[:00]`).
pub fn to_cron(s: &Schedule) -> Result<String, String> {
    let cal = match s {
        Schedule::Cron(c) => return Ok(c.clone()),
        Schedule::Calendar(c) => c,
    };
    let short = match cal.to_ascii_lowercase().as_str() {
        "minutely" => Some("* * * * *"),
        "hourly" => Some("0 * * * *"),
        "daily" => Some("0 0 * * *"),
        "weekly" => Some("0 0 * * 1"), // systemd's weekly is Monday 00:00
        "monthly" => Some("0 0 1 * *"),
        "yearly" | "annually" => Some("0 0 1 1 *"),
        "quarterly" => Some("0 0 1 1,4,7,10 *"),
        "semiannually" => Some("0 0 1 1,7 *"),
        _ => None,
    };
    if let Some(c) = short {
        return Ok(c.to_string());
    }
    let no = |why: &str| {
        format!("calendar spec {cal:?} has no cron equivalent ({why}); use a cron expression")
    };
    let mut parts: Vec<&str> = cal.split_whitespace().collect();
    let mut dow = "*".to_string();
    if parts
        .first()
        .is_some_and(|p| p.starts_with(|c: char| c.is_ascii_alphabetic()))
    {
        let mut days = Vec::new();
        for item in parts.remove(0).split(',') {
            let idx = |d: &str| {
                WEEKDAYS.iter().position(|w| {
                    d.len() >= 3 && d.to_ascii_lowercase().starts_with(&w.to_ascii_lowercase())
                })
            };
            match item.split_once("..") {
                Some((a, b)) => days.push(format!(
                    "{}-{}",
                    idx(a).ok_or_else(|| no("weekday"))?,
                    idx(b).ok_or_else(|| no("weekday"))?
                )),
                None => days.push(idx(item).ok_or_else(|| no("weekday"))?.to_string()),
            }
        }
        dow = days.join(",");
    }
    let (mut dom, mut month) = ("*".to_string(), "*".to_string());
    let cronish = |v: &str| v.replace("..", "-");
    if parts.first().is_some_and(|p| p.contains('-')) {
        let d: Vec<&str> = parts.remove(0).split('-').collect();
        let (y, m, day) = match d.as_slice() {
            [y, m, day] => (*y, *m, *day),
            [m, day] => ("*", *m, *day),
            _ => return Err(no("date")),
        };
        if y != "*" {
            return Err(no("a year"));
        }
        month = cronish(m);
        dom = cronish(day);
    }
    let time = match parts.as_slice() {
        [t] => *t,
        [] => "00:00:00",
        _ => return Err(no("a time zone")),
    };
    let t: Vec<&str> = time.split(':').collect();
    let (h, m) = match t.as_slice() {
        [h, m] => (*h, *m),
        [h, m, s] if s.trim_start_matches('0').is_empty() => (*h, *m),
        _ => return Err(no("seconds")),
    };
    if [h, m, &dom, &month]
        .iter()
        .any(|v| v.contains('/') || v.contains('~'))
    {
        return Err(no("a step"));
    }
    let num = |v: &str| v.trim_start_matches('0').to_string();
    let field = |v: &str| {
        if v == "*" {
            v.to_string()
        } else {
            v.split(',')
                .map(|x| {
                    x.split('-')
                        .map(|n| if n.is_empty() { "0".into() } else { num(n) })
                        .map(|n| if n.is_empty() { "0".into() } else { n })
                        .collect::<Vec<_>>()
                        .join("-")
                })
                .collect::<Vec<_>>()
                .join(",")
        }
    };
    Ok(format!(
        "{} {} {} {} {dow}",
        field(m),
        field(h),
        field(&dom),
        field(&month)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_to_calendar() {
        let c = |s: &str| to_calendar(&Schedule::Cron(s.into())).unwrap();
        assert_eq!(c("0 0 * * 0"), "Sun *-*-* 00:00:00");
        assert_eq!(c("*/15 3 * * *"), "*-*-* 03:00,15,30,45:00");
        assert_eq!(
            c("30 2 1-3 jan,jul mon-fri"),
            "Mon,Tue,Wed,Thu,Fri *-01,07-01,02,03 02:30:00"
        );
        assert_eq!(c("0 0 * * 7"), "Sun *-*-* 00:00:00");
        assert_eq!(c("@weekly"), "weekly");
        assert_eq!(
            to_calendar(&Schedule::Calendar("Sun 00:00".into())).unwrap(),
            "Sun 00:00"
        );
    }

    #[test]
    fn calendar_to_cron() {
        let c = |s: &str| to_cron(&Schedule::Calendar(s.into()));
        assert_eq!(c("weekly").unwrap(), "0 0 * * 1");
        assert_eq!(c("Sun 00:00").unwrap(), "0 0 * * 0");
        assert_eq!(c("Mon..Fri 02:30").unwrap(), "30 2 * * 1-5");
        assert_eq!(c("*-*-01 04:05:00").unwrap(), "5 4 1 * *");
        assert!(c("2026-12-24 18:00").is_err());
        assert!(c("*:0/15").is_err());
        assert_eq!(
            to_cron(&Schedule::Cron("0 0 * * 0".into())).unwrap(),
            "0 0 * * 0"
        );
    }
}
