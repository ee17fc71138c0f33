//! Validation of schedules: 5-field cron expressions, systemd calendar specs and time spans.
//! Pure; rendering timers and cron files is the apply step's job.

use crate::context::Schedule;

const CRON_SHORTHANDS: [&str; 8] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
    "@reboot",
];
const CALENDAR_SHORTHANDS: [&str; 9] = [
    "minutely",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "yearly",
    "annually",
    "quarterly",
    "semiannually",
];
const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// A cron expression (`0 0 * * 0`, `@weekly`) or a systemd calendar spec (`Sun *-*-* 00:00:00`,
/// `weekly`). Something made only of cron characters is held to cron's 5 fields.
pub fn parse_schedule(s: &str) -> Result<Schedule, String> {
    let s = s.trim();
    if s.starts_with('@') {
        return if CRON_SHORTHANDS.contains(&s) && s != "@reboot" {
            Ok(Schedule::Cron(s.to_string()))
        } else {
            Err(format!(
                "{s:?} is not a cron shorthand (@hourly, @daily, @weekly, @monthly, @yearly)"
            ))
        };
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    let cronish = |f: &&str| {
        f.bytes()
            .all(|b| b.is_ascii_digit() || b"*,-/".contains(&b))
    };
    if fields.len() == 5 && !fields[..4].iter().any(|f| f.contains(':')) {
        validate_cron(&fields)?;
        return Ok(Schedule::Cron(fields.join(" ")));
    }
    if !fields.is_empty() && fields.iter().all(cronish) && !s.contains("*-") {
        return Err(format!(
            "a cron expression has 5 fields (minute hour day-of-month month day-of-week), {s:?} has {}",
            fields.len()
        ));
    }
    validate_calendar(&fields)?;
    Ok(Schedule::Calendar(fields.join(" ")))
}

fn validate_cron(fields: &[&str]) -> Result<(), String> {
    const NAMES: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];
    const RANGES: [(u32, u32); 5] = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)];
    for (i, field) in fields.iter().enumerate() {
        let names: &[&str] = match i {
            3 => &MONTHS,
            4 => &DAYS,
            _ => &[],
        };
        let base = if i == 3 { 1 } else { 0 };
        let (lo, hi) = RANGES[i];
        let value = |t: &str| -> Result<u32, String> {
            if let Some(p) = names.iter().position(|n| n.eq_ignore_ascii_case(t)) {
                return Ok(p as u32 + base);
            }
            match t.parse::<u32>() {
                Ok(v) if (lo..=hi).contains(&v) => Ok(v),
                _ => Err(format!(
                    "{} field {field:?}: {t:?} is not in {lo}..{hi}",
                    NAMES[i]
                )),
            }
        };
        for item in field.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (item, None),
            };
            if let Some(step) = step {
                if !matches!(step.parse::<u32>(), Ok(n) if n >= 1 && n <= hi.max(1)) {
                    return Err(format!("{} field {field:?}: bad step {step:?}", NAMES[i]));
                }
            }
            if range == "*" {
                continue;
            }
            match range.split_once('-') {
                Some((a, b)) => {
                    if value(a)? > value(b)? {
                        return Err(format!(
                            "{} field {field:?}: range {range:?} runs backwards",
                            NAMES[i]
                        ));
                    }
                }
                None => {
                    value(range)?;
                }
            }
        }
    }
    Ok(())
}

/// systemd.time(7) calendar events: `[WEEKDAYS] [DATE] [TIME] [TIMEZONE]` or a shorthand.
fn validate_calendar(fields: &[&str]) -> Result<(), String> {
    let spec = fields.join(" ");
    let bad = |why: &str| Err(format!("{spec:?} is not a systemd calendar spec: {why}"));
    if fields.is_empty() {
        return bad("it is empty");
    }
    if fields.len() == 1 && CALENDAR_SHORTHANDS.contains(&fields[0].to_ascii_lowercase().as_str()) {
        return Ok(());
    }
    let mut rest = fields;
    if let Some(first) = rest.first() {
        if first
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
        {
            for day in first.split(',').flat_map(|d| d.split("..")) {
                if !DAYS
                    .iter()
                    .any(|n| day.len() >= 3 && day.to_ascii_lowercase().starts_with(n))
                {
                    return bad(&format!("{day:?} is not a weekday"));
                }
            }
            rest = &rest[1..];
        }
    }
    let mut seen_time = false;
    for (i, part) in rest.iter().enumerate() {
        if part.contains(':') {
            component_list(part, ':', &[(0, 23), (0, 59), (0, 60)], 2).or_else(|e| bad(&e))?;
            seen_time = true;
        } else if part.contains('-') && !seen_time && i == 0 {
            component_list(part, '-', &[(1970, 2199), (1, 12), (1, 31)], 2).or_else(|e| bad(&e))?;
        } else if seen_time
            && i == rest.len() - 1
            && (part.eq_ignore_ascii_case("UTC") || part.contains('/'))
        {
            // a time zone
        } else {
            return bad(&format!(
                "{part:?} is neither a date (Y-M-D) nor a time (H:M[:S])"
            ));
        }
    }
    Ok(())
}

/// `a-b-c` (or `a:b:c`) where each part is `*`, a number, a list, a `..` range, with `/step`.
fn component_list(
    s: &str,
    sep: char,
    ranges: &[(u32, u32)],
    min_parts: usize,
) -> Result<(), String> {
    let parts: Vec<&str> = s.split(sep).collect();
    if parts.len() < min_parts || parts.len() > ranges.len() {
        return Err(format!("{s:?} has {} parts", parts.len()));
    }
    // A date may leave out the year: `*-01` is month-day.
    let offset = ranges.len() - parts.len();
    let offset = if sep == '-' { offset } else { 0 };
    for (i, part) in parts.iter().enumerate() {
        let (lo, hi) = ranges[i + offset];
        for item in part.split(',') {
            let (range, step) = item
                .split_once('/')
                .map_or((item, None), |(r, s)| (r, Some(s)));
            if let Some(step) = step {
                if !matches!(step.parse::<u32>(), Ok(n) if n >= 1) {
                    return Err(format!("bad step {step:?} in {s:?}"));
                }
            }
            if range == "*" {
                continue;
            }
            for v in range.split("..") {
                // seconds may carry a fraction
                let v = v.split('.').next().unwrap_or(v);
                match v.parse::<u32>() {
                    Ok(n) if (lo..=hi).contains(&n) => {}
                    _ => return Err(format!("{v:?} is out of range {lo}..{hi} in {s:?}")),
                }
            }
        }
    }
    Ok(())
}

/// A systemd time span: `5min`, `1h 30min`, `90s`, `2d`.
pub fn parse_timespan(s: &str) -> Result<u64, String> {
    const UNITS: [(&str, u64); 18] = [
        ("s", 1),
        ("sec", 1),
        ("second", 1),
        ("seconds", 1),
        ("m", 60),
        ("min", 60),
        ("minute", 60),
        ("minutes", 60),
        ("h", 3600),
        ("hr", 3600),
        ("hour", 3600),
        ("hours", 3600),
        ("d", 86400),
        ("day", 86400),
        ("days", 86400),
        ("w", 604800),
        ("week", 604800),
        ("weeks", 604800),
    ];
    let err = || format!("{s:?} is not a time span like 5min, 1h or 90s");
    // Spaces only: the value is written into unit files and cron lines as given.
    if s.contains(|c: char| c.is_control()) {
        return Err(err());
    }
    let compact: String = s.split_whitespace().collect();
    let mut total: u64 = 0;
    let mut rest = compact.as_str();
    if rest.is_empty() {
        return Err(err());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..letters];
        rest = &rest[letters..];
        let mult = if unit.is_empty() {
            1 // systemd: a bare number is seconds
        } else {
            UNITS.iter().find(|(u, _)| *u == unit).ok_or_else(err)?.1
        };
        total = total
            .checked_add(n.checked_mul(mult).ok_or_else(err)?)
            .ok_or_else(err)?;
    }
    if total == 0 {
        return Err(format!("{s:?} is zero"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_expressions() {
        for ok in [
            "0 0 * * 0",
            "*/15 * * * *",
            "0 3 1-15 jan,Jul mon-fri",
            "5,35 2 * * 7",
            "@weekly",
        ] {
            assert!(
                matches!(parse_schedule(ok), Ok(Schedule::Cron(_))),
                "{ok}: {:?}",
                parse_schedule(ok)
            );
        }
        for bad in [
            "0 0 * *",
            "61 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "5-1 * * * *",
            "0 0 * * * *",
            "@reboot",
            "@sometimes",
        ] {
            assert!(parse_schedule(bad).is_err(), "{bad} should be refused");
        }
        assert!(parse_schedule("0 0 * *").unwrap_err().contains("5 fields"));
        assert!(parse_schedule("61 * * * *").unwrap_err().contains("minute"));
    }

    #[test]
    fn calendar_specs() {
        for ok in [
            "weekly",
            "daily",
            "Sun *-*-* 00:00:00",
            "Mon..Fri 02:30",
            "*-*-01 04:00",
            "Sat,Sun 10:00 UTC",
            "2026-12-24 18:00:00",
            "*:0/15",
        ] {
            assert!(
                matches!(parse_schedule(ok), Ok(Schedule::Calendar(_))),
                "{ok}: {:?}",
                parse_schedule(ok)
            );
        }
        for bad in [
            "sometimes",
            "Funday 10:00",
            "*-13-01 00:00",
            "25:00",
            "Mon 10:61",
        ] {
            assert!(parse_schedule(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan("5min"), Ok(300));
        assert_eq!(parse_timespan("15min"), Ok(900));
        assert_eq!(parse_timespan("1h 30min"), Ok(5400));
        assert_eq!(parse_timespan("90"), Ok(90));
        for bad in [
            "",
            "min",
            "5 parsecs",
            "0s",
            "-5min",
            "5\nmin",
            "5min\n",
            "1h\t30min",
        ] {
            assert!(parse_timespan(bad).is_err(), "{bad}");
        }
    }
}
