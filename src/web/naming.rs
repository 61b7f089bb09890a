//! What a pipeline is called on the board: the app, read from its values path template.
//! A spec carries no name of its own, and the path nearly always holds the app's directory
//! (`apps/petstore/{phase}/values.yaml`, `argo-projects/petstore/manifests/overlays/{phase}/…`)
//! or its file (`envs/petstore-{phase}.yaml`).

/// Directory names that say how a GitOps repository is laid out, never which app it holds.
const LAYOUT_WORDS: [&str; 26] = [
    "app",
    "applications",
    "apps",
    "argo",
    "argo-projects",
    "argocd",
    "base",
    "chart",
    "charts",
    "clusters",
    "deploy",
    "deployments",
    "env",
    "environments",
    "envs",
    "gitops",
    "helm",
    "k8s",
    "kubernetes",
    "kustomize",
    "manifests",
    "overlay",
    "overlays",
    "projects",
    "services",
    "values",
];

/// The app a values path template is about: the last directory that is neither a phase nor a
/// layout word, else the file's name without the phase and `values`, else the last directory
/// without the phase, else the path itself.
pub(super) fn app_name(path: &str) -> String {
    let mut parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let file = parts.pop().unwrap_or(path);
    let dirs: Vec<&str> = parts
        .into_iter()
        .filter(|d| !d.contains("{phase}"))
        .collect();
    if let Some(dir) = dirs
        .iter()
        .rev()
        .find(|d| !LAYOUT_WORDS.contains(&d.to_ascii_lowercase().as_str()))
    {
        return (*dir).to_string();
    }
    let stem = file
        .rsplit_once('.')
        .map_or(file, |(stem, _)| stem)
        .replace("{phase}", "");
    let stem = stem
        .split(['-', '_', '.'])
        .filter(|w| !w.is_empty() && !w.eq_ignore_ascii_case("values"))
        .collect::<Vec<_>>()
        .join("-");
    if !stem.is_empty() && !LAYOUT_WORDS.contains(&stem.to_ascii_lowercase().as_str()) {
        return stem;
    }
    dirs.last()
        .map_or_else(|| path.to_string(), |d| (*d).to_string())
}

#[cfg(test)]
mod tests {
    use super::app_name;

    #[test]
    fn names_a_pipeline_by_the_apps_directory() {
        for (path, app) in [
            ("apps/petstore/{phase}/values-{phase}.yaml", "petstore"),
            (
                "argo-projects/petstore/manifests/overlays/{phase}/values-{phase}.yaml",
                "petstore",
            ),
            ("overlays/{phase}/billing/kustomization.yaml", "billing"),
            ("teams/payments/checkout/values-{phase}.yaml", "checkout"),
        ] {
            assert_eq!(app_name(path), app, "{path}");
        }
    }

    #[test]
    fn names_a_pipeline_by_its_file_when_no_directory_says_it() {
        assert_eq!(app_name("envs/petstore-{phase}.yaml"), "petstore");
        assert_eq!(app_name("{phase}/orders.yaml"), "orders");
        assert_eq!(app_name("values-{phase}.yaml"), "values-{phase}.yaml");
        assert_eq!(app_name("helm/values-{phase}.yaml"), "helm");
    }
}
