//! Human forms of sizes and times, as Ollama's CLI prints them.

use std::time::Duration;

/// Bytes in decimal units: `91 MB`, `1.9 GB`.
pub(crate) fn human_bytes(bytes: u64) -> String {
    let units = [("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)];
    for (unit, size) in units {
        let value = bytes as f64 / size;
        if value >= 1.0 {
            return if value >= 10.0 { format!("{value:.0} {unit}") } else { format!("{value:.1} {unit}") };
        }
    }
    format!("{bytes} B")
}

/// A duration in words: `4 minutes`, `About an hour`, `2 days`.
pub(crate) fn human_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let plural = |n: u64, unit: &str| if n == 1 { format!("1 {unit}") } else { format!("{n} {unit}s") };
    match seconds {
        0 => "Less than a second".to_owned(),
        1..=59 => plural(seconds, "second"),
        60..=119 => "About a minute".to_owned(),
        120..=3599 => plural(seconds / 60, "minute"),
        3600..=7199 => "About an hour".to_owned(),
        7200..=172_799 => plural(seconds / 3600, "hour"),
        172_800..=1_209_599 => plural(seconds / 86_400, "day"),
        1_209_600..=4_838_399 => plural(seconds / 604_800, "week"),
        4_838_400..=63_071_999 => plural(seconds / 2_592_000, "month"),
        _ => plural(seconds / 31_536_000, "year"),
    }
}

/// `N units ago` for an RFC 3339 time.
pub(crate) fn time_ago(rfc3339: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(rfc3339) {
        Ok(time) => {
            let elapsed = chrono::Utc::now().signed_duration_since(time).to_std().unwrap_or_default();
            format!("{} ago", human_duration(elapsed))
        }
        Err(_) => rfc3339.to_owned(),
    }
}

/// `N units from now` for an RFC 3339 time; `Forever` for the far future.
pub(crate) fn time_until(rfc3339: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(rfc3339) {
        Ok(time) => {
            let remaining = time.signed_duration_since(chrono::Utc::now());
            if remaining.num_days() > 365 * 100 {
                return "Forever".to_owned();
            }
            match remaining.to_std() {
                Ok(remaining) => format!("{} from now", human_duration(remaining)),
                Err(_) => "Stopping...".to_owned(),
            }
        }
        Err(_) => "Forever".to_owned(),
    }
}

/// Left-aligned columns separated by three spaces.
pub(crate) fn table(rows: &[Vec<String>]) -> String {
    let n_columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n_columns)
        .map(|column| rows.iter().filter_map(|row| row.get(column)).map(|cell| cell.chars().count()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in rows {
        let cells: Vec<String> =
            row.iter().enumerate().map(|(column, cell)| format!("{cell:<width$}", width = widths[column])).collect();
        text.push_str(cells.join("    ").trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(human_bytes(91_000_000), "91 MB");
        assert_eq!(human_bytes(1_900_000_000), "1.9 GB");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_duration(Duration::from_secs(240)), "4 minutes");
        assert_eq!(human_duration(Duration::from_secs(90)), "About a minute");
        assert_eq!(human_duration(Duration::from_secs(3 * 86_400)), "3 days");
    }
}
