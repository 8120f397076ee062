//! Parsing `#[secure_tool(...)]` arguments, keeping each literal so errors point at it.

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{Expr, ExprLit, Ident, Lit, LitInt, LitStr, Token};

/// The attribute's arguments, listed in its errors as `` `scope`, `unscoped`, ... ``.
const ARGUMENTS: Keys = Keys;

struct Keys;

impl std::fmt::Display for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, key) in KEYS.iter().enumerate() {
            let comma = if i == 0 { "" } else { ", " };
            write!(f, "{comma}`{key}`")?;
        }
        Ok(())
    }
}

const KEYS: [&str; 13] = [
    "scope",
    "unscoped",
    "audit_redact",
    "name",
    "title",
    "read_only",
    "destructive",
    "idempotent",
    "open_world",
    "rate",
    "timeout",
    "concurrency",
    "authorize",
];

/// The error for an argument the attribute does not know, with the known one it is a misspelling of, if any
/// (at most two edits away, and fewer than its own length).
fn unknown_argument(key: &str) -> String {
    let closest = KEYS
        .iter()
        .map(|known| (edit_distance(key, known), *known))
        .filter(|(distance, _)| *distance <= 2 && *distance < key.chars().count())
        .min_by_key(|(distance, _)| *distance)
        .or_else(|| {
            // One holding the other, as a word or more of it: `rate_limit`, `max_concurrency`, `redact`.
            KEYS.iter()
                .filter(|known| {
                    let (long, short) = if key.len() > known.len() {
                        (key, **known)
                    } else {
                        (**known, key)
                    };
                    short.len() >= 4 && long.contains(short)
                })
                .map(|known| (0, *known))
                .next()
        });
    match closest {
        Some((_, known)) => format!(
            "unknown `secure_tool` argument `{key}`; did you mean `{known}`? The arguments are {ARGUMENTS}"
        ),
        None => format!("unknown `secure_tool` argument `{key}`; expected one of {ARGUMENTS}"),
    }
}

#[derive(Default)]
pub struct Args {
    /// The `scope` keyword, when present.
    pub scope_key: Option<Ident>,
    pub scopes: Vec<LitStr>,
    /// A `scope` value that could not be read, already reported: that it lists no scope would be noise.
    pub scope_malformed: bool,
    /// An argument already reported looks like a botched `scope` (a key spelt like `scope` or `unscoped`, a bare
    /// string): that `scope` is missing would be noise.
    pub botched_scope: bool,
    pub unscoped: Option<Ident>,
    pub audit_redact: Option<(Ident, Vec<LitStr>)>,
    pub name: Option<LitStr>,
    pub title: Option<LitStr>,
    pub read_only: Option<bool>,
    pub destructive: Option<bool>,
    pub idempotent: Option<bool>,
    pub open_world: Option<bool>,
    /// `rate = "10/min"`.
    pub rate: Option<LitStr>,
    /// `timeout = "5s"`.
    pub timeout: Option<LitStr>,
    /// `concurrency = 4`.
    pub concurrency: Option<LitInt>,
    /// `authorize = path::to::rule`.
    pub authorize: Option<syn::Path>,
    /// The second of `read_only` and `destructive`, when both are true: where the contradiction is reported.
    pub contradiction: Option<Ident>,
}

/// Parses the arguments. Problems with single arguments are collected in `errors` and parsing goes on; a token
/// stream that does not parse at all is returned as the error.
pub fn parse(mut tokens: TokenStream, errors: &mut Vec<syn::Error>) -> syn::Result<Args> {
    let mut args = Args {
        botched_scope: drop_bare_literals(&mut tokens, errors),
        ..Args::default()
    };
    let parser = syn::meta::parser(|meta| parse_one(&mut args, meta, errors));
    parser.parse2(tokens)?;
    Ok(args)
}

/// Reports and removes arguments that are a bare literal, such as `"files.read"` for `scope = "files.read"`:
/// `syn::meta::parser` would stop at the first one, before any other argument is checked. Returns whether there was
/// one.
fn drop_bare_literals(tokens: &mut TokenStream, errors: &mut Vec<syn::Error>) -> bool {
    let mut kept = TokenStream::new();
    let mut dropped = false;
    let mut argument = Vec::new();
    let mut flush = |argument: &mut Vec<TokenTree>, comma: Option<TokenTree>| {
        if let Some(TokenTree::Literal(literal)) = argument.first() {
            let example = match syn::parse2::<LitStr>(TokenTree::Literal(literal.clone()).into()) {
                Ok(lit) => format!("scope = \"{}\"", lit.value()),
                Err(_) => "scope = \"files.read\"".to_owned(),
            };
            let tokens: TokenStream = argument.drain(..).collect();
            dropped = true;
            errors.push(syn::Error::new_spanned(
                tokens,
                format_args!("expected a named argument such as `{example}`; `secure_tool` takes one of {ARGUMENTS}"),
            ));
        } else {
            kept.extend(argument.drain(..).chain(comma));
        }
    };
    // A comma between generic arguments (`authorize = rules::at_most::<5, 10>`) separates no arguments: `<` and
    // `>` are not groups, so their depth is counted (a `>` of `->` or `=>` closes nothing).
    let mut angle_depth = 0usize;
    let mut previous_joint: Option<char> = None;
    for token in std::mem::take(tokens) {
        let joined_to = previous_joint.take();
        match token {
            TokenTree::Punct(ref punct) if punct.as_char() == ',' && angle_depth == 0 => {
                flush(&mut argument, Some(token))
            }
            TokenTree::Punct(ref punct) => {
                match punct.as_char() {
                    '<' => angle_depth += 1,
                    '>' if !matches!(joined_to, Some('-' | '=')) => {
                        angle_depth = angle_depth.saturating_sub(1)
                    }
                    _ => {}
                }
                if punct.spacing() == proc_macro2::Spacing::Joint {
                    previous_joint = Some(punct.as_char());
                }
                argument.push(token);
            }
            other => argument.push(other),
        }
    }
    flush(&mut argument, None);
    *tokens = kept;
    dropped
}

fn parse_one(
    args: &mut Args,
    meta: ParseNestedMeta,
    errors: &mut Vec<syn::Error>,
) -> syn::Result<()> {
    let Some(key) = meta.path.get_ident().cloned() else {
        let path = quote::ToTokens::to_token_stream(&meta.path)
            .to_string()
            .replace(' ', "");
        errors.push(syn::Error::new_spanned(
            &meta.path,
            format_args!("unknown `secure_tool` argument `{path}`; expected one of {ARGUMENTS}"),
        ));
        return skip_value(&meta);
    };
    let duplicate = |errors: &mut Vec<syn::Error>| {
        errors.push(syn::Error::new_spanned(
            &key,
            format_args!("duplicate `secure_tool` argument `{key}`"),
        ));
    };
    match key.to_string().as_str() {
        "scopes" => {
            args.botched_scope = true;
            errors.push(syn::Error::new_spanned(
                &key,
                "unknown `secure_tool` argument `scopes`; write `scope`, which takes one scope or a list of them: \
                 `scope = [\"a.read\", \"b.read\"]`",
            ));
            skip_value(&meta)?;
        }
        "scope" => {
            let scopes = string_or_list(&meta, &key, "files.read", errors)?;
            if args.scope_key.is_some() {
                duplicate(errors);
            } else {
                args.scope_key = Some(key);
                match scopes {
                    Some(scopes) => args.scopes = scopes,
                    None => args.scope_malformed = true,
                }
            }
        }
        "audit_redact" => {
            let names = string_or_list(&meta, &key, "password", errors)?;
            if args.audit_redact.is_some() {
                duplicate(errors);
            } else {
                args.audit_redact = Some((key, names.unwrap_or_default()));
            }
        }
        "rate" | "timeout" => {
            let example = if key == "rate" { "10/min" } else { "30s" };
            let value = string(&meta, &key, example, errors)?;
            let slot = if key == "rate" {
                &mut args.rate
            } else {
                &mut args.timeout
            };
            if slot.is_some() {
                duplicate(errors);
            } else {
                *slot = value;
            }
        }
        "concurrency" => {
            let value = match value(&meta, &key, "`concurrency = 4`", errors)? {
                Some(Expr::Lit(ExprLit {
                    lit: Lit::Int(lit), ..
                })) => Some(lit),
                Some(other) => {
                    errors.push(syn::Error::new_spanned(
                        other,
                        "expected a whole number of calls, e.g. `concurrency = 4`",
                    ));
                    None
                }
                None => None,
            };
            if args.concurrency.is_some() {
                duplicate(errors);
            } else {
                args.concurrency = value;
            }
        }
        "authorize" => {
            let value = match value(&meta, &key, "`authorize = path::to::rule`", errors)? {
                Some(Expr::Path(path)) if path.qself.is_none() => Some(path.path),
                Some(other) => {
                    errors.push(syn::Error::new_spanned(
                        other,
                        "expected the path of an `async fn` rule, e.g. `authorize = tickets::only_reporter`",
                    ));
                    None
                }
                None => None,
            };
            if args.authorize.is_some() {
                duplicate(errors);
            } else {
                args.authorize = value;
            }
        }
        "name" | "title" => {
            let example = if key == "name" {
                "read_file"
            } else {
                "Read a file"
            };
            let value = string(&meta, &key, example, errors)?;
            let slot = if key == "name" {
                &mut args.name
            } else {
                &mut args.title
            };
            if slot.is_some() {
                duplicate(errors);
            } else {
                *slot = value;
            }
        }
        "unscoped" => {
            if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
                errors.push(meta.error("`unscoped` takes no value; write `unscoped` alone"));
                skip_value(&meta)?;
            }
            if args.unscoped.is_some() {
                duplicate(errors);
            } else {
                args.unscoped = Some(key);
            }
        }
        "read_only" | "destructive" | "idempotent" | "open_world" => {
            let value = if meta.input.peek(Token![=]) {
                match ungroup(meta.value()?.parse()?) {
                    Expr::Lit(ExprLit {
                        lit: Lit::Bool(value),
                        ..
                    }) => value.value,
                    other => {
                        errors.push(syn::Error::new_spanned(
                            other,
                            format_args!(
                                "expected `true` or `false`; `{key}` alone means `{key} = true`"
                            ),
                        ));
                        true
                    }
                }
            } else {
                true
            };
            let slot = match key.to_string().as_str() {
                "read_only" => &mut args.read_only,
                "destructive" => &mut args.destructive,
                "idempotent" => &mut args.idempotent,
                _ => &mut args.open_world,
            };
            if slot.is_some() {
                duplicate(errors);
            } else {
                *slot = Some(value);
                if args.read_only == Some(true)
                    && args.destructive == Some(true)
                    && args.contradiction.is_none()
                {
                    args.contradiction = Some(key);
                }
            }
        }
        unknown => {
            args.botched_scope |= ["scope", "unscoped"]
                .iter()
                .any(|known| edit_distance(unknown, known) <= 2);
            errors.push(syn::Error::new_spanned(&key, unknown_argument(unknown)));
            skip_value(&meta)?;
        }
    }
    Ok(())
}

/// `key = "a"`; `None` once a malformed value is reported.
fn string(
    meta: &ParseNestedMeta,
    key: &Ident,
    example: &str,
    errors: &mut Vec<syn::Error>,
) -> syn::Result<Option<LitStr>> {
    let Some(value) = value(meta, key, &format!("`{key} = \"{example}\"`"), errors)? else {
        return Ok(None);
    };
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(Some(lit)),
        other => {
            errors.push(syn::Error::new_spanned(
                other,
                format_args!("expected a string literal, e.g. `{key} = \"{example}\"`"),
            ));
            Ok(None)
        }
    }
}

/// `key = "a"` or `key = ["a", "b"]`; `None` once a malformed value is reported.
fn string_or_list(
    meta: &ParseNestedMeta,
    key: &Ident,
    example: &str,
    errors: &mut Vec<syn::Error>,
) -> syn::Result<Option<Vec<LitStr>>> {
    let expected = format!("`{key} = \"{example}\"` or `{key} = [\"{example}\", ..]`");
    let Some(value) = value(meta, key, &expected, errors)? else {
        return Ok(None);
    };
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(Some(vec![lit])),
        Expr::Array(list) => {
            let mut items = Vec::new();
            let mut malformed = false;
            for item in list.elems {
                match ungroup(item) {
                    Expr::Lit(ExprLit {
                        lit: Lit::Str(lit), ..
                    }) => items.push(lit),
                    other => {
                        malformed = true;
                        errors.push(syn::Error::new_spanned(
                            other,
                            format_args!(
                                "expected a string literal such as `\"{example}\"` in `{key}`"
                            ),
                        ));
                    }
                }
            }
            Ok((!malformed).then_some(items))
        }
        other => {
            errors.push(syn::Error::new_spanned(
                other,
                format_args!("expected a string literal or a list of them: {expected}"),
            ));
            Ok(None)
        }
    }
}

/// The expression after `key =`; `None` once a missing value is reported.
fn value(
    meta: &ParseNestedMeta,
    key: &Ident,
    expected: &str,
    errors: &mut Vec<syn::Error>,
) -> syn::Result<Option<Expr>> {
    if !meta.input.peek(Token![=]) {
        errors.push(syn::Error::new_spanned(
            key,
            format_args!("`{key}` takes a value: {expected}"),
        ));
        skip_value(meta)?;
        return Ok(None);
    }
    Ok(Some(ungroup(meta.value()?.parse()?)))
}

/// A value passed through a `macro_rules!` arrives wrapped in an invisible group.
fn ungroup(expr: Expr) -> Expr {
    match expr {
        Expr::Group(group) => ungroup(*group.expr),
        other => other,
    }
}

/// Consumes whatever follows a nested meta's path (`= value` or `(...)`), so the next one can still be read.
pub(crate) fn skip_value(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let _content;
        syn::parenthesized!(_content in meta.input);
        let _: TokenStream = _content.parse()?;
    }
    Ok(())
}

/// Levenshtein distance, to tell a misspelt argument from an unrelated one.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// The span to blame for something missing from the attribute.
pub fn missing() -> Span {
    Span::call_site()
}
