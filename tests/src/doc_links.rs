//! Relative links of the Markdown documentation (README.md, BENCHMARKS.md and docs/**/*.md):
//! every target must exist, and a `#fragment` must name a heading of the target (GitHub's
//! anchor rules), so moving a section cannot leave a dead link behind.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The Markdown files whose links are checked, below the repository root `root`.
pub fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("README.md"), root.join("BENCHMARKS.md")];
    let mut dirs = vec![root.join("docs")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.retain(|f| f.is_file());
    files.sort();
    files
}

/// The relative link targets of `markdown` with their 1-based line numbers: `[text](target)`
/// outside code blocks and inline code, without web, mail and other scheme links.
pub fn relative_links(markdown: &str) -> Vec<(usize, String)> {
    let mut links = Vec::new();
    let mut in_fence = false;
    for (index, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        // Inline code spans are the odd-numbered pieces between backticks.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = prose.as_str();
        while let Some(start) = rest.find("](") {
            rest = &rest[start + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            let target = rest[..end].split_whitespace().next().unwrap_or_default();
            if !target.is_empty() && !target.contains("://") && !target.starts_with("mailto:") {
                links.push((index + 1, target.to_string()));
            }
            rest = &rest[end..];
        }
    }
    links
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens.
pub fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of every heading in `markdown` (a repeated heading gets `-1`, `-2`, … as on GitHub).
pub fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut in_fence = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        let Some(text) = line.strip_prefix('#').map(|l| l.trim_start_matches('#')) else {
            continue;
        };
        if in_fence || !text.starts_with(' ') {
            continue;
        }
        let base = slug(text.trim());
        let mut anchor = base.clone();
        let mut n = 0;
        while found.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        found.insert(anchor);
    }
    found
}

/// Every broken relative link of `files`, as `file:line: target: why`.
pub fn broken_links(root: &Path, files: &[PathBuf]) -> Vec<String> {
    let mut broken = Vec::new();
    for file in files {
        let text = fs::read_to_string(file).unwrap_or_default();
        let shown = file.strip_prefix(root).unwrap_or(file).display();
        for (line, target) in relative_links(&text) {
            let (path, fragment) = match target.split_once('#') {
                Some((path, fragment)) => (path, Some(fragment)),
                None => (target.as_str(), None),
            };
            let resolved = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap_or(root).join(path)
            };
            if !resolved.exists() {
                broken.push(format!(
                    "{shown}:{line}: {target}: no such file or directory"
                ));
                continue;
            }
            let Some(fragment) = fragment else { continue };
            let is_markdown = resolved.extension().is_some_and(|e| e == "md");
            let target_text = fs::read_to_string(&resolved).unwrap_or_default();
            if is_markdown && !anchors(&target_text).contains(&fragment.to_lowercase()) {
                broken.push(format!(
                    "{shown}:{line}: {target}: no heading with that anchor"
                ));
            }
        }
    }
    broken
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_outside_code_are_found_and_anchors_follow_github() {
        let doc = "# T\n\nSee [a](docs/a.md#x-y) and [w](https://e.org) `[c](code.md)`.\n\
                   ```\n[f](fenced.md)\n```\n## The BTF bundle (`just btfgen`)\n## Dup\n## Dup\n";
        assert_eq!(relative_links(doc), vec![(3, "docs/a.md#x-y".to_string())]);
        let found = anchors(doc);
        for anchor in ["t", "the-btf-bundle-just-btfgen", "dup", "dup-1"] {
            assert!(found.contains(anchor), "{anchor} missing from {found:?}");
        }
    }

    #[test]
    fn broken_targets_and_anchors_are_named() {
        let dir = std::env::temp_dir().join(format!("dk-doc-links-{}", std::process::id()));
        fs::create_dir_all(dir.join("docs")).unwrap();
        fs::write(
            dir.join("docs/a.md"),
            "# A\n## Here\n[up](../README.md#top)\n",
        )
        .unwrap();
        fs::write(
            dir.join("README.md"),
            "# Top\n[ok](docs/a.md#here) [gone](docs/b.md) [bad](docs/a.md#there)\n",
        )
        .unwrap();
        let broken = broken_links(&dir, &markdown_files(&dir));
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            broken,
            vec![
                "README.md:2: docs/b.md: no such file or directory".to_string(),
                "README.md:2: docs/a.md#there: no heading with that anchor".to_string(),
            ]
        );
    }

    #[test]
    fn every_relative_link_of_the_documentation_resolves() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let files = markdown_files(&root);
        assert!(
            files.iter().any(|f| f.ends_with("docs/deploy.md")),
            "docs/ not found under {}",
            root.display()
        );
        let broken = broken_links(&root, &files);
        assert!(broken.is_empty(), "broken links: {broken:#?}");
    }
}
