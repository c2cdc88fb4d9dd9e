//! The product's source as syn reads it: its files, its functions with their lengths, and the
//! facts a room rule looks at (paths named, functions and methods called, string literals, fields,
//! attributes), each with its line. Macro bodies are read as expressions where they parse as such
//! (`format!`, `vec!`, `assert!`), so a string inside `format!` is seen.

use std::path::{Path, PathBuf};

use syn::visit::Visit;

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

pub fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The source folders of the product: the binary's (`src/`) and each crate's (`crates/*/src`).
pub fn crate_roots() -> Vec<PathBuf> {
    let mut roots = vec![Path::new(ROOT).join("src")];
    let mut crates: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("crates"))
        .expect("crates/")
        .flatten()
        .map(|e| e.path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
    crates.sort();
    roots.extend(crates);
    roots
}

/// Every Rust file of the product.
pub fn product_files() -> Vec<PathBuf> {
    crate_roots().iter().flat_map(|r| rust_files(r)).collect()
}

pub fn parse(path: &Path) -> syn::File {
    let text = std::fs::read_to_string(path).expect("read");
    syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A path relative to the repository, for messages.
pub fn rel(path: &Path) -> String {
    path.strip_prefix(ROOT).unwrap_or(path).display().to_string()
}

/// Every function (free, in an impl, in a trait with a body) with its first line and length.
#[derive(Default)]
pub struct Functions {
    pub found: Vec<(String, usize, usize)>,
}

impl Functions {
    fn note(&mut self, name: &syn::Ident, span: proc_macro2::Span) {
        let (start, end) = (span.start().line, span.end().line);
        self.found.push((name.to_string(), start, end + 1 - start));
    }
}

impl<'a> Visit<'a> for Functions {
    fn visit_item_fn(&mut self, f: &'a syn::ItemFn) {
        self.note(&f.sig.ident, syn::spanned::Spanned::span(f));
        syn::visit::visit_item_fn(self, f);
    }

    fn visit_impl_item_fn(&mut self, f: &'a syn::ImplItemFn) {
        self.note(&f.sig.ident, syn::spanned::Spanned::span(f));
        syn::visit::visit_impl_item_fn(self, f);
    }

    fn visit_trait_item_fn(&mut self, f: &'a syn::TraitItemFn) {
        if f.default.is_some() {
            self.note(&f.sig.ident, syn::spanned::Spanned::span(f));
        }
        syn::visit::visit_trait_item_fn(self, f);
    }
}

/// What a file's code names and does, each with its line (`#[cfg(test)]` modules left out).
#[derive(Default, Debug)]
pub struct Facts {
    /// Paths as written, segments joined by `::` (a `use` tree is expanded to each leaf).
    pub paths: Vec<(Vec<String>, usize)>,
    /// Functions and methods called, by their last name; a method's receiver when it is a name
    /// or a field (`row` of `row.get(0)`, `text` of `self.text.find(…)`); the first argument when
    /// it is an integer literal.
    pub calls: Vec<Call>,
    pub strings: Vec<(String, usize)>,
    pub fields: Vec<(String, usize)>,
    pub attrs: Vec<(String, usize)>,
    /// `mod x;` and `mod x { … }` declared in the file.
    pub mods: Vec<String>,
}

#[derive(Debug)]
pub struct Call {
    pub name: String,
    pub receiver: Option<String>,
    pub first_int: bool,
    pub line: usize,
}

pub fn facts(file: &syn::File) -> Facts {
    let mut f = Facts::default();
    f.visit_file(file);
    f
}

pub fn facts_of_text(text: &str) -> Facts {
    facts(&syn::parse_file(text).expect("parses"))
}

fn line(span: proc_macro2::Span) -> usize {
    span.start().line
}

fn use_leaves(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_leaves(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => out.push([prefix.as_slice(), &[n.ident.to_string()]].concat()),
        syn::UseTree::Rename(r) => out.push([prefix.as_slice(), &[r.ident.to_string()]].concat()),
        syn::UseTree::Glob(_) => out.push(prefix.clone()),
        syn::UseTree::Group(g) => g.items.iter().for_each(|t| use_leaves(t, prefix, out)),
    }
}

fn receiver_name(e: &syn::Expr) -> Option<String> {
    match e {
        syn::Expr::Path(p) => p.path.get_ident().map(|i| i.to_string()),
        syn::Expr::Field(f) => match &f.member {
            syn::Member::Named(n) => Some(n.to_string()),
            syn::Member::Unnamed(_) => None,
        },
        syn::Expr::Reference(r) => receiver_name(&r.expr),
        _ => None,
    }
}

fn is_int(e: Option<&syn::Expr>) -> bool {
    matches!(e, Some(syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Int(_), .. })))
}

impl<'a> Visit<'a> for Facts {
    fn visit_item_use(&mut self, u: &'a syn::ItemUse) {
        let mut leaves = Vec::new();
        use_leaves(&u.tree, &mut Vec::new(), &mut leaves);
        let at = line(syn::spanned::Spanned::span(u));
        self.paths.extend(leaves.into_iter().map(|p| (p, at)));
    }

    fn visit_path(&mut self, p: &'a syn::Path) {
        let segs = p.segments.iter().map(|s| s.ident.to_string()).collect();
        self.paths.push((segs, line(syn::spanned::Spanned::span(p))));
        syn::visit::visit_path(self, p);
    }

    fn visit_expr_call(&mut self, c: &'a syn::ExprCall) {
        if let syn::Expr::Path(p) = &*c.func {
            if let Some(last) = p.path.segments.last() {
                let first_int = is_int(c.args.first());
                let at = line(syn::spanned::Spanned::span(c));
                self.calls.push(Call { name: last.ident.to_string(), receiver: None, first_int, line: at });
            }
        }
        syn::visit::visit_expr_call(self, c);
    }

    fn visit_expr_method_call(&mut self, m: &'a syn::ExprMethodCall) {
        self.calls.push(Call {
            name: m.method.to_string(),
            receiver: receiver_name(&m.receiver),
            first_int: is_int(m.args.first()),
            line: line(m.method.span()),
        });
        syn::visit::visit_expr_method_call(self, m);
    }

    fn visit_lit_str(&mut self, s: &'a syn::LitStr) {
        self.strings.push((s.value(), line(s.span())));
    }

    fn visit_expr_field(&mut self, f: &'a syn::ExprField) {
        if let syn::Member::Named(n) = &f.member {
            self.fields.push((n.to_string(), line(n.span())));
        }
        syn::visit::visit_expr_field(self, f);
    }

    fn visit_attribute(&mut self, a: &'a syn::Attribute) {
        let text = quote::ToTokens::to_token_stream(a).to_string();
        self.attrs.push((text, line(syn::spanned::Spanned::span(a))));
    }

    fn visit_item_mod(&mut self, m: &'a syn::ItemMod) {
        self.mods.push(m.ident.to_string());
        // A `#[cfg(test)]` module is not the product: its fixtures (SQL samples, a clock) break no rule.
        let test_only = m.attrs.iter().any(|a| quote::ToTokens::to_token_stream(a).to_string() == "# [cfg (test)]");
        if !test_only {
            syn::visit::visit_item_mod(self, m);
        }
    }

    fn visit_macro(&mut self, m: &'a syn::Macro) {
        use syn::parse::Parser;
        let args = syn::punctuated::Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated;
        if let Ok(exprs) = args.parse2(m.tokens.clone()) {
            exprs.iter().for_each(|e| self.visit_expr(e));
        }
        syn::visit::visit_macro(self, m);
    }
}
