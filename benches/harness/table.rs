//! The printed table: one row per figure, with what it is compared against.

use crate::Opts;

pub struct Row {
    pub benchmark: String,
    pub driftwatch: String,
    pub comparison: String,
    pub ratio: String,
    pub target: String,
}

#[derive(Default)]
pub struct Table {
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Table {
    pub fn row(
        &mut self,
        benchmark: &str,
        driftwatch: &str,
        comparison: &str,
        ratio: &str,
        target: &str,
    ) {
        self.rows.push(Row {
            benchmark: benchmark.into(),
            driftwatch: driftwatch.into(),
            comparison: comparison.into(),
            ratio: ratio.into(),
            target: target.into(),
        });
    }

    pub fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    /// Markdown, ready to paste into the README.
    pub fn render(&self, opts: &Opts) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "Machine: {} ({} cores), {} runs per figure, medians.\n\n",
            machine(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            opts.runs
        ));
        s.push_str("| Benchmark | driftwatch | compared with | ratio | target |\n");
        s.push_str("|---|---|---|---|---|\n");
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                r.benchmark, r.driftwatch, r.comparison, r.ratio, r.target
            ));
        }
        for n in &self.notes {
            s.push_str(&format!("\n- {n}"));
        }
        s.push('\n');
        s
    }
}

fn machine() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
