//! Parsing `#[secure_tool(...)]` arguments, keeping each literal so errors point at it.

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{bracketed, Ident, LitBool, LitStr, Token};

const ARGUMENTS: &str = "`scope`, `unscoped`, `audit_redact`, `name`, `title`, `read_only`, `destructive`, `idempotent`, `open_world`";

#[derive(Default)]
pub struct Args {
    /// The `scope` keyword, when present.
    pub scope_key: Option<Ident>,
    pub scopes: Vec<LitStr>,
    pub unscoped: Option<Ident>,
    pub audit_redact: Option<(Ident, Vec<LitStr>)>,
    pub name: Option<LitStr>,
    pub title: Option<LitStr>,
    pub read_only: Option<bool>,
    pub destructive: Option<bool>,
    pub idempotent: Option<bool>,
    pub open_world: Option<bool>,
}

/// Parses the arguments. Problems with single arguments are collected in `errors` and parsing goes on; a token
/// stream that does not parse at all is returned as the error.
pub fn parse(tokens: TokenStream, errors: &mut Vec<syn::Error>) -> syn::Result<Args> {
    let mut args = Args::default();
    let parser = syn::meta::parser(|meta| parse_one(&mut args, meta, errors));
    parser.parse2(tokens)?;
    Ok(args)
}

fn parse_one(args: &mut Args, meta: ParseNestedMeta, errors: &mut Vec<syn::Error>) -> syn::Result<()> {
    let Some(key) = meta.path.get_ident().cloned() else {
        errors.push(meta.error(format_args!("expected one of {ARGUMENTS}")));
        return skip_value(&meta);
    };
    let duplicate = |errors: &mut Vec<syn::Error>| {
        errors.push(syn::Error::new_spanned(&key, format_args!("duplicate `secure_tool` argument `{key}`")));
    };
    match key.to_string().as_str() {
        "scope" | "scopes" => {
            let scopes = string_or_list(&meta)?;
            if args.scope_key.is_some() {
                duplicate(errors);
            } else {
                args.scope_key = Some(key);
                args.scopes = scopes;
            }
        }
        "audit_redact" => {
            let names = string_or_list(&meta)?;
            if args.audit_redact.is_some() {
                duplicate(errors);
            } else {
                args.audit_redact = Some((key, names));
            }
        }
        "name" | "title" => {
            let value: LitStr = meta.value()?.parse()?;
            let slot = if key == "name" { &mut args.name } else { &mut args.title };
            if slot.is_some() {
                duplicate(errors);
            } else {
                *slot = Some(value);
            }
        }
        "unscoped" => {
            if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
                errors.push(meta.error("`unscoped` takes no value"));
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
                meta.value()?.parse::<LitBool>()?.value
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
            }
        }
        _ => {
            errors.push(syn::Error::new_spanned(
                &key,
                format_args!("unknown `secure_tool` argument `{key}`; expected one of {ARGUMENTS}"),
            ));
            skip_value(&meta)?;
        }
    }
    Ok(())
}

/// `key = "a"` or `key = ["a", "b"]`.
fn string_or_list(meta: &ParseNestedMeta) -> syn::Result<Vec<LitStr>> {
    let input = meta.value()?;
    if input.peek(syn::token::Bracket) {
        let content;
        bracketed!(content in input);
        let items = content.parse_terminated(<LitStr as syn::parse::Parse>::parse, Token![,])?;
        Ok(items.into_iter().collect())
    } else {
        Ok(vec![input.parse()?])
    }
}

/// Consumes whatever follows an unknown key, so the next argument can still be checked.
fn skip_value(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let _content;
        syn::parenthesized!(_content in meta.input);
        let _: TokenStream = _content.parse()?;
    }
    Ok(())
}

/// The span to blame for something missing from the attribute.
pub fn missing() -> Span {
    Span::call_site()
}
