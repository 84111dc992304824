//! `StopFilter`: cuts generated text at the first stop sequence, holding back any tail that
//! could still grow into one, so a stop sequence is never streamed, even in part.

/// What [`StopFilter::push`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopStep {
    /// Text safe to emit now (possibly empty).
    Continue(String),
    /// A stop sequence matched: emit this last text and end.
    Stopped(String),
}

/// Filters a stream of text pieces against stop sequences.
#[derive(Debug, Clone, Default)]
pub struct StopFilter {
    stops: Vec<String>,
    pending: String,
}

impl StopFilter {
    /// A filter for `stops` (empty sequences are ignored).
    pub fn new(stops: &[String]) -> StopFilter {
        StopFilter { stops: stops.iter().filter(|stop| !stop.is_empty()).cloned().collect(), pending: String::new() }
    }

    /// Adds a piece of generated text.
    pub fn push(&mut self, piece: &str) -> StopStep {
        self.pending.push_str(piece);
        if let Some(stop_at) = self.stops.iter().filter_map(|stop| self.pending.find(stop.as_str())).min() {
            let before = self.pending[..stop_at].to_owned();
            self.pending.clear();
            return StopStep::Stopped(before);
        }
        let held_back =
            self.stops.iter().map(|stop| longest_suffix_that_prefixes(&self.pending, stop)).max().unwrap_or(0);
        let emit_len = self.pending.len() - held_back;
        let emitted = self.pending[..emit_len].to_owned();
        self.pending.drain(..emit_len);
        StopStep::Continue(emitted)
    }

    /// Text still held back when generation ends without a stop.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop`, on a char boundary.
fn longest_suffix_that_prefixes(text: &str, stop: &str) -> usize {
    let max_len = text.len().min(stop.len().saturating_sub(1));
    (1..=max_len)
        .rev()
        .find(|&len| {
            let start = text.len() - len;
            text.is_char_boundary(start) && stop.starts_with(&text[start..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool) {
        let stops: Vec<String> = stops.iter().map(|stop| stop.to_string()).collect();
        let mut filter = StopFilter::new(&stops);
        let mut emitted = Vec::new();
        for piece in pieces {
            match filter.push(piece) {
                StopStep::Continue(text) => emitted.push(text),
                StopStep::Stopped(text) => {
                    emitted.push(text);
                    return (emitted, true);
                }
            }
        }
        emitted.push(filter.finish());
        (emitted, false)
    }

    /// Stop sequences, pieces pushed, and the pieces emitted with whether it stopped.
    type Case = (&'static [&'static str], &'static [&'static str], (&'static [&'static str], bool));

    #[test]
    fn stops_and_holds_back() {
        let cases: &[Case] = &[
            (&[], &["a", "b"], (&["a", "b", ""], false)),
            (&[" from"], &["Hello", " ", "fr", "om", " x"], (&["Hello", "", "", ""], true)),
            (&["\n\n"], &["a\n", "b"], (&["a", "\nb", ""], false)),
            (&["END"], &["xxEN", "Dyy"], (&["xx", ""], true)),
            (&["ab", "b"], &["cab"], (&["c"], true)),
            (&["é!"], &["café"], (&["caf", "é"], false)),
        ];
        for (stops, pieces, (expected, stopped)) in cases {
            let (emitted, did_stop) = run(stops, pieces);
            assert_eq!(
                (emitted.iter().map(String::as_str).collect::<Vec<_>>(), did_stop),
                (expected.to_vec(), *stopped),
                "{stops:?} {pieces:?}"
            );
        }
    }
}
