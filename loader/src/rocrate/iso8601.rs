//! ISO 8601 dates and date-times as RO-Crate's `datePublished` allows them.
//!
//! Why not a date library: they parse the RFC 3339 profile (a full calendar date, seconds,
//! often a required offset), while crates legitimately publish a year (`2024`), a month
//! (`2024-01`, `202401`), an ordinal date (`2024-001`) or a week date (`2024-W01-1`). The
//! grammar here is the one the reference validator (roc-validator) accepts, with real calendar
//! checks on top: a day must exist in its month, and a second is 00–59 (a leap second `:60`
//! is refused, as the reference does).

/// Whether `s` is an ISO 8601 date, optionally followed by a time of day and a zone.
pub(crate) fn is_date(s: &str) -> bool {
    let mut p = Cursor(s.as_bytes());
    date(&mut p) && (p.0.is_empty() || (p.eat_any(b"T ") && time(&mut p) && p.0.is_empty()))
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn eat(&mut self, c: u8) -> bool {
        let hit = self.0.first() == Some(&c);
        if hit {
            self.0 = &self.0[1..];
        }
        hit
    }

    fn eat_any(&mut self, set: &[u8]) -> bool {
        let hit = self.0.first().is_some_and(|c| set.contains(c));
        if hit {
            self.0 = &self.0[1..];
        }
        hit
    }

    fn peek_digits(&self) -> usize {
        self.0.iter().take_while(|c| c.is_ascii_digit()).count()
    }

    /// Exactly `n` digits as a number.
    fn number(&mut self, n: usize) -> Option<u32> {
        if self.peek_digits() < n {
            return None;
        }
        let value = self.0[..n]
            .iter()
            .fold(0, |acc, d| acc * 10 + u32::from(d - b'0'));
        self.0 = &self.0[n..];
        Some(value)
    }
}

/// `YYYY`, `YYYY-MM`, `YYYYMM`, `YYYY-MM-DD`, `YYYYMMDD`, `YYYY-DDD`, `YYYYDDD`, `YYYY-Www`,
/// `YYYYWww`, `YYYY-Www-D`, `YYYYWwwD`, with an optional sign on the year.
fn date(p: &mut Cursor<'_>) -> bool {
    p.eat_any(b"+-");
    let Some(year) = p.number(4) else {
        return false;
    };
    if p.0.is_empty() {
        return true;
    }
    let extended = p.eat(b'-');
    if p.eat(b'W') {
        let Some(week) = p.number(2) else {
            return false;
        };
        if !(1..=53).contains(&week) {
            return false;
        }
        if extended && p.0.first() == Some(&b'-') {
            p.eat(b'-');
            return p.number(1).is_some_and(|d| (1..=7).contains(&d));
        }
        if !extended && p.peek_digits() == 1 {
            return p.number(1).is_some_and(|d| (1..=7).contains(&d));
        }
        return true;
    }
    match p.peek_digits() {
        3 => p
            .number(3)
            .is_some_and(|day| (1..=days_in_year(year)).contains(&day)),
        2 | 4 => {
            let Some(month) = p.number(2) else {
                return false;
            };
            if !(1..=12).contains(&month) {
                return false;
            }
            // The day's separator must match the month's: `2024-0101` is neither form.
            let day_follows = if extended {
                p.eat(b'-')
            } else {
                p.peek_digits() == 2
            };
            !day_follows
                || p.number(2)
                    .is_some_and(|day| (1..=days_in_month(year, month)).contains(&day))
        }
        _ => false,
    }
}

/// `hh`, `hh:mm`, `hh:mm:ss` (or without colons), each with an optional fraction on its last
/// part, `24:00` for the end of the day, then an optional `Z` or offset.
fn time(p: &mut Cursor<'_>) -> bool {
    let Some(hour) = p.number(2) else {
        return false;
    };
    let extended = p.0.first() == Some(&b':');
    let mut minute = 0;
    let mut second = 0;
    if p.eat(b':') || p.peek_digits() >= 2 {
        let Some(m) = p.number(2) else {
            return false;
        };
        minute = m;
        if (extended && p.eat(b':')) || (!extended && p.peek_digits() >= 2) {
            let Some(s) = p.number(2) else {
                return false;
            };
            second = s;
        }
    }
    if p.eat_any(b".,") && p.number(1).is_some() {
        while p.number(1).is_some() {}
    }
    let in_range =
        (hour < 24 && minute < 60 && second < 60) || (hour == 24 && minute == 0 && second == 0);
    in_range && zone(p)
}

fn zone(p: &mut Cursor<'_>) -> bool {
    if p.eat_any(b"Zz") || p.0.is_empty() {
        return p.0.is_empty();
    }
    if !p.eat_any(b"+-") {
        return false;
    }
    let Some(hours) = p.number(2) else {
        return false;
    };
    p.eat(b':');
    let minutes = if p.0.is_empty() { Some(0) } else { p.number(2) };
    hours < 24 && minutes.is_some_and(|m| m < 60) && p.0.is_empty()
}

fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_year(year: u32) -> u32 {
    if is_leap(year) { 366 } else { 365 }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_precision_of_an_iso_8601_date_is_accepted() {
        for date in [
            "2024",
            "2024-01",
            "202401",
            "2024-01-31",
            "20240131",
            "2024-001",
            "2024366",
            "2024-W01",
            "2024W01",
            "2024-W01-1",
            "2024W017",
            "+2024-01-31",
        ] {
            assert!(is_date(date), "{date}");
        }
    }

    #[test]
    fn date_times_with_and_without_zones_are_accepted() {
        for date in [
            "2025-01-11T00:57:35+00:00",
            "2025-01-11T00:57:35Z",
            "2025-01-11T00:57:35.123456+01:00",
            "2025-01-11T00:57:35",
            "2025-01-11T00:57",
            "2025-01-11T00",
            "2025-01-11T005735Z",
            "2025-01-11 00:57:35",
            "2025-01-11T24:00",
            "2025-01-11T00:57:35-0500",
            "2025-01-11T00:57:35+01",
            "2024-05-17T01:04:52.123,456+01:00",
        ] {
            assert_eq!(is_date(date), !date.contains(",456"), "{date}");
        }
    }

    #[test]
    fn impossible_or_foreign_dates_are_refused() {
        for date in [
            "",
            "24",
            "11/01/2025",
            "11 January 2025",
            "yesterday",
            "2025-13-01",
            "2025-02-29",
            "2025-04-31",
            "2025-0131",
            "2025-000",
            "2025-366",
            "2024-W54",
            "2024-W01-8",
            "2021-01-01T23:59:60",
            "2021-01-01T25:00",
            "2021-01-01T24:01",
            "2021-01-01T12:00+25:00",
            "2021-01-01T12:00Zjunk",
            "2021-01-01T",
        ] {
            assert!(!is_date(date), "{date}");
        }
        assert!(is_date("2024-02-29"));
    }
}
