//! Checks across the attribute and the function; yields the model `expand` works from.

use std::collections::BTreeSet;

use syn::ext::IdentExt;
use syn::{GenericArgument, LitStr, PathArguments, Type, TypeReference};

use crate::ast::{Function, ParamKind};
use crate::attr::{self, Args};

/// Everything needed to generate code, already checked.
pub struct Model<'a> {
    pub function: &'a Function<'a>,
    pub tool_name: String,
    pub title: Option<String>,
    pub scopes: Vec<String>,
    pub unscoped: bool,
    pub audit_redact: Vec<String>,
    pub hints: [Option<bool>; 4],
    /// The single `Args<T>` type, if the function takes its input that way.
    pub args_struct: Option<&'a Type>,
    /// `rate`: calls and period in seconds.
    pub rate: Option<(u32, u64)>,
    /// `timeout`, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// `concurrency`.
    pub concurrency: Option<u32>,
    /// `authorize`: the rule's path.
    pub authorize: Option<&'a syn::Path>,
}

pub fn check<'a>(
    args: &'a Args,
    function: &'a Function<'a>,
    errors: &mut Vec<syn::Error>,
) -> Model<'a> {
    let sig = &function.original.sig;
    if sig.asyncness.is_none() {
        errors.push(syn::Error::new_spanned(
            sig.fn_token,
            "`#[secure_tool]` functions must be `async fn`",
        ));
    }
    if sig.constness.is_some() || !matches!(sig.safety, syn::Safety::Default) || sig.abi.is_some() {
        errors.push(syn::Error::new_spanned(
            sig.fn_token,
            "`#[secure_tool]` functions must be plain `async fn`: no `const`, `unsafe` or `extern`",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        // `Generics` prints its parameters only: a `where` clause alone is spanned on itself.
        let tokens = match &sig.generics.where_clause {
            Some(where_clause) if sig.generics.params.is_empty() => {
                quote::ToTokens::to_token_stream(where_clause)
            }
            _ => quote::ToTokens::to_token_stream(&sig.generics),
        };
        errors.push(syn::Error::new_spanned(
            tokens,
            "`#[secure_tool]` functions cannot be generic; a tool has one input schema",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(syn::Error::new_spanned(
            variadic,
            "`#[secure_tool]` functions cannot be variadic",
        ));
    }

    let tool_name = match &args.name {
        Some(name) => {
            check_tool_name(name, errors);
            name.value()
        }
        None => {
            // The function's own name is the tool's: it must be one too (Rust allows `résumé` and 200 letters).
            let name = sig.ident.unraw().to_string();
            if !valid_tool_name(&name) {
                errors.push(syn::Error::new_spanned(
                    &sig.ident,
                    format_args!(
                        "`{name}` is not a valid tool name (1 to 128 ASCII letters, digits, `_`, `-` or `.`); name \
                         the tool with `name = \"...\"`"
                    ),
                ));
            }
            name
        }
    };

    // Scopes.
    let mut seen = BTreeSet::new();
    for scope in &args.scopes {
        if let Err(error) = crate::grammar::scope(&scope.value()) {
            let value = scope.value();
            // Several scopes written as one: say how a list is written.
            let pieces: Vec<&str> = value
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|piece| !piece.is_empty())
                .collect();
            let hint = if pieces.len() > 1 {
                format!(
                    "; several scopes are a list: `scope = [\"{}\"]`",
                    pieces.join("\", \"")
                )
            } else {
                String::new()
            };
            errors.push(syn::Error::new_spanned(
                scope,
                format_args!("invalid scope `{value}`: {}{hint}", error.reason()),
            ));
        } else if !seen.insert(scope.value()) {
            errors.push(syn::Error::new_spanned(
                scope,
                format_args!("duplicate scope `{}`", scope.value()),
            ));
        }
    }
    match (&args.scope_key, &args.unscoped) {
        (Some(key), _) if args.scopes.is_empty() && !args.scope_malformed => {
            errors.push(syn::Error::new_spanned(
                key,
                "`scope` lists no scope; name at least one, or opt out explicitly with `unscoped`",
            ))
        }
        (Some(_), Some(unscoped)) => errors.push(syn::Error::new_spanned(
            unscoped,
            "`unscoped` contradicts `scope`; keep one of them",
        )),
        (None, None) if !args.botched_scope => errors.push(syn::Error::new(
            attr::missing(),
            "missing `scope`: every secure tool declares the scope a caller needs, e.g. \
             `#[secure_tool(scope = \"files.read\")]`, or opts out explicitly with `unscoped`",
        )),
        _ => {}
    }

    // Parameters.
    let mut args_struct = None;
    let mut input_names = BTreeSet::new();
    for param in &function.params {
        check_conditional_attrs(param, errors);
        if let syn::FnArg::Typed(typed) = param.original
            && let Some(impl_trait) = find_impl_trait(&typed.ty)
        {
            errors.push(syn::Error::new_spanned(
                impl_trait,
                "a parameter of a secure tool has one concrete type, decoded from the call or taken from its \
                 context: `impl Trait` cannot be one; name the type (`String` for `impl Into<String>`, say)",
            ));
        }
        match &param.kind {
            ParamKind::Receiver => errors.push(syn::Error::new_spanned(
                param.original,
                "`#[secure_tool]` functions cannot take `self`; use `State<T>` for shared state",
            )),
            ParamKind::Input {
                ident,
                pat,
                ty,
                attrs,
            } => match ident {
                Some(ident) => {
                    check_schema_attrs(attrs, errors);
                    input_names.insert(ident.unraw().to_string());
                    check_wrapped_context(ty, attrs, errors);
                    check_rule_types(ty, attrs, errors);
                    if let Some(reference) = find_reference(ty) {
                        let instead = match &*reference.elem {
                            Type::Path(p) if p.path.is_ident("str") => {
                                "use `String` instead of `&str`"
                            }
                            Type::Slice(_) => "use `Vec<T>` instead of `&[T]`",
                            _ => "remove the `&` and take the value",
                        };
                        errors.push(syn::Error::new_spanned(
                            reference,
                            format_args!("secure tool arguments must be owned types; {instead}"),
                        ));
                    }
                }
                None => {
                    // `Shared(x): Shared<T>` is an extractor's destructuring under a name the macro does not know.
                    let message = match (&**pat, crate::ast::type_name(ty)) {
                        (syn::Pat::TupleStruct(_), Some(name)) => format!(
                            "`{name}` is not a context type the attribute knows, so this parameter would be an \
                             argument, and arguments need a plain name; if `{name}` is a context type imported \
                             under another name, use its own name (`State`, `Caller`, `Args`, ...)"
                        ),
                        _ => "expected an identifier: each argument of a secure tool is named in its input schema"
                            .to_owned(),
                    };
                    errors.push(syn::Error::new_spanned(pat, message));
                }
            },
            ParamKind::Args { inner, ty, attrs } => {
                if let Some(attr) = attrs.iter().find(|a| {
                    !a.path().is_ident("doc") && !crate::ast::is_lint_attr(a) && !is_conditional(a)
                }) {
                    errors.push(syn::Error::new_spanned(
                        attr,
                        "attributes of `Args<T>` belong on the fields of `T`",
                    ));
                }
                match (inner, args_struct) {
                    (None, _) => errors.push(syn::Error::new_spanned(
                        ty,
                        "expected `Args<T>`, the whole input as one type; if `Args` is a type of your own meant \
                         as an argument, mark the parameter `#[arg]`",
                    )),
                    (Some(_), Some(_)) => errors.push(syn::Error::new_spanned(
                        ty,
                        "a secure tool takes at most one `Args<T>` parameter",
                    )),
                    (Some(inner), None) => args_struct = Some(*inner),
                }
            }
            ParamKind::Context { attrs, ty } => {
                if let Some(attr) = attrs
                    .iter()
                    .find(|a| crate::ast::is_field_attr(a) && !a.path().is_ident("doc"))
                {
                    let name = quote::ToTokens::to_token_stream(ty)
                        .to_string()
                        .replace(' ', "");
                    errors.push(syn::Error::new_spanned(
                        attr,
                        format_args!(
                            "`{name}` is taken as a context parameter, which is not an argument and takes no \
                             argument attributes; if `{name}` is a type of your own meant as an argument, mark the \
                             parameter `#[arg]`"
                        ),
                    ));
                }
            }
        }
    }
    check_wire_names(function, errors);
    if let Some(args_ty) = args_struct {
        let args_ty = quote::ToTokens::to_token_stream(args_ty)
            .to_string()
            .replace(' ', "");
        for input in function.inputs() {
            // A parameter without a name is reported above already.
            if let ParamKind::Input {
                ident: Some(ident), ..
            } = &input.kind
            {
                errors.push(syn::Error::new_spanned(
                    input.original,
                    format_args!(
                        "`Args<{args_ty}>` is the whole input of this tool; move `{}` into `{args_ty}`",
                        ident.unraw()
                    ),
                ));
            }
        }
    }

    // Redactions.
    let mut audit_redact = Vec::new();
    if let Some((key, names)) = &args.audit_redact {
        // An empty list redacts nothing, though it reads as if the tool's secrets were seen to (a list emptied by an
        // edit, say).
        if names.is_empty() {
            errors.push(syn::Error::new_spanned(
                key,
                "`audit_redact` names no argument; name the arguments to redact (`audit_redact = [\"password\"]`), \
                 or remove it",
            ));
        }
        let mut seen = BTreeSet::new();
        for name in names {
            let value = name.value();
            if !seen.insert(value.clone()) {
                errors.push(syn::Error::new_spanned(
                    name,
                    format_args!("`{value}` is already redacted"),
                ));
            } else if args_struct.is_none() && !input_names.contains(&value) {
                let known = input_names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let expected = if known.is_empty() {
                    "the function has no arguments".to_owned()
                } else {
                    format!("expected one of {known}")
                };
                errors.push(syn::Error::new_spanned(
                    name,
                    format_args!("`audit_redact` names `{value}`, which is not an argument of this tool; {expected}"),
                ));
            }
            audit_redact.push(value);
        }
        check_redacted_names(function, &audit_redact, errors);
    }

    // Limits.
    let rate = args
        .rate
        .as_ref()
        .and_then(|lit| match crate::grammar::rate(&lit.value()) {
            Ok(rate) => Some((rate.count, rate.period.as_secs())),
            Err(reason) => {
                errors.push(syn::Error::new_spanned(
                    lit,
                    format_args!(
                        "invalid rate `{}`: {reason}; expected {}",
                        lit.value(),
                        crate::grammar::RATE_EXAMPLE
                    ),
                ));
                None
            }
        });
    let timeout_ms =
        args.timeout
            .as_ref()
            .and_then(|lit| match crate::grammar::duration(&lit.value()) {
                Ok(duration) => Some(duration.as_millis() as u64),
                Err(reason) => {
                    errors.push(syn::Error::new_spanned(
                        lit,
                        format_args!(
                            "invalid timeout `{}`: {reason}; expected {}",
                            lit.value(),
                            crate::grammar::DURATION_EXAMPLE
                        ),
                    ));
                    None
                }
            });
    let concurrency = args.concurrency.as_ref().and_then(|lit| match lit.base10_parse::<u32>() {
        Ok(n) if n >= 1 => Some(n),
        _ => {
            errors.push(syn::Error::new_spanned(
                lit,
                "`concurrency` is the most calls of this tool that may run at once: a whole number from 1 to 4294967295",
            ));
            None
        }
    });

    if let Some(key) = &args.contradiction {
        errors.push(syn::Error::new_spanned(
            key,
            "`read_only` and `destructive` contradict each other: a read-only tool changes nothing (and gets no \
             `call_started` record before it runs); keep the one that is true",
        ));
    }

    Model {
        function,
        tool_name,
        title: args.title.as_ref().map(LitStr::value),
        scopes: args.scopes.iter().map(LitStr::value).collect(),
        unscoped: args.unscoped.is_some(),
        audit_redact,
        hints: [
            args.read_only,
            args.destructive,
            args.idempotent,
            args.open_world,
        ],
        args_struct,
        rate,
        timeout_ms,
        concurrency,
        authorize: args.authorize.as_ref(),
    }
}

fn is_conditional(attr: &syn::Attribute) -> bool {
    attr.path().is_ident("cfg") || attr.path().is_ident("cfg_attr")
}

/// `#[cfg]` on a parameter would make the input schema differ from one build to another (and the attribute would
/// pass an argument the function no longer takes); `#[cfg_attr]` would add attributes the attribute never sees, so
/// a `#[validate]` or `#[serde]` rule in it would be neither checked nor applied.
fn check_conditional_attrs(param: &crate::ast::Param, errors: &mut Vec<syn::Error>) {
    let syn::FnArg::Typed(typed) = param.original else {
        return;
    };
    for attr in &typed.attrs {
        if attr.path().is_ident("cfg") {
            errors.push(syn::Error::new_spanned(
                attr,
                "a parameter of a secure tool cannot be conditional: its input schema and its call would differ \
                 from one build to another; make the argument an `Option<T>`, or put `#[cfg]` on the whole tool",
            ));
        } else if attr.path().is_ident("cfg_attr") {
            errors.push(syn::Error::new_spanned(
                attr,
                "`#[cfg_attr]` on a parameter of a secure tool is not supported: the attribute would not see the \
                 attributes it adds; write them unconditionally, or put `#[cfg_attr]` on the whole tool",
            ));
        }
    }
}

/// The schema of an argument says what is checked, and only that: `#[schemars(...)]` keywords that would add a
/// constraint the generated code does not check (a length, a range, a pattern, a format) are refused in favour of
/// `#[validate(...)]`, which checks it and puts it in the schema too; and a `#[serde(alias)]`, a name the schema
/// does not list, is refused.
/// `caller: Option<Caller>` would make the parameter an argument decoded from the call, and rustc's errors about
/// it (no `Deserialize` for `Caller`) would not say why: said here, with the fix. Only for the context types whose
/// names an argument's own type is unlikely to have: `Option<State>`, `Option<Progress>` or `Option<Meta>` may
/// well be a type of the user's (a ticket's state), and stays an argument.
fn check_wrapped_context(ty: &syn::Type, attrs: &[syn::Attribute], errors: &mut Vec<syn::Error>) {
    const NEVER_OPTIONAL: [&str; 8] = [
        "Caller",
        "RequestId",
        "CallId",
        "CallContext",
        "CancellationToken",
        "ClientLog",
        "Elicitation",
        "Sampling",
    ];
    if attrs.iter().any(crate::ast::is_arg_marker) {
        return;
    }
    let Some((wrapper, Some(inner))) = crate::ast::last_segment(ty) else {
        return;
    };
    let Some((name, _)) = crate::ast::last_segment(inner) else {
        return;
    };
    if wrapper != "Option" || !NEVER_OPTIONAL.contains(&name.as_str()) {
        return;
    }
    errors.push(syn::Error::new_spanned(
        ty,
        format_args!(
            "`{name}` is a context parameter, never optional: take `{name}` itself (a call always has one); \
             inside `Option<..>` it would be an argument decoded from the call (if this is a type of your own meant \
             as an argument, mark the parameter `#[arg]`)"
        ),
    ));
}

/// `#[validate(length(..))]` on a number or `#[validate(range(..))]` on a string would be reported by rustc on the
/// whole attribute, as a method of validator's missing on the type: said here, on the rule, with the one that fits.
/// Only for types known by their name (a number, `bool`, `char`, `String`, a list or map of std), through an
/// `Option`; anything else is left to rustc.
fn check_rule_types(ty: &syn::Type, attrs: &[syn::Attribute], errors: &mut Vec<syn::Error>) {
    const NUMBERS: [&str; 16] = [
        "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
        "f32", "f64", "bool", "char",
    ];
    const SIZED: [&str; 9] = [
        "String", "str", "Vec", "VecDeque", "HashMap", "BTreeMap", "HashSet", "BTreeSet", "Cow",
    ];
    let mut ty = ty;
    let name = loop {
        match crate::ast::last_segment(ty) {
            Some((wrapper, Some(inner))) if wrapper == "Option" => ty = inner,
            Some((name, _)) => break name,
            None => return,
        }
    };
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("validate")) {
        let _ = attr.parse_nested_meta(|meta| {
            let fix = if meta.path.is_ident("length") && NUMBERS.contains(&name.as_str()) {
                Some(format!(
                    "`length` counts the characters of a string or the items of a list or map, and this argument \
                     is a `{name}`: bound its value with `range(min = .., max = ..)`"
                ))
            } else if meta.path.is_ident("range") && SIZED.contains(&name.as_str()) {
                Some(format!(
                    "`range` bounds a number, and this argument is a `{name}`: bound its size with \
                     `length(min = .., max = ..)`"
                ))
            } else {
                None
            };
            if let Some(fix) = fix {
                errors.push(syn::Error::new_spanned(&meta.path, fix));
            }
            crate::attr::skip_value(&meta)
        });
    }
}

fn check_schema_attrs(attrs: &[syn::Attribute], errors: &mut Vec<syn::Error>) {
    const UNCHECKED: [&str; 11] = [
        "length",
        "range",
        "regex",
        "pattern",
        "email",
        "url",
        "contains",
        "inner",
        "required",
        "with",
        "schema_with",
    ];
    // What only describes the argument; anything else would make the schema say what decoding does not do (a
    // `rename` the decoder does not know, a `default` it does not apply, a `transform` adding any keyword).
    // (schemars takes no `inline` or `deprecated` on a field: `#[deprecated]` on the parameter marks it.)
    const DESCRIBING: [&str; 3] = ["title", "description", "example"];
    for attr in attrs {
        if attr.path().is_ident("schemars") {
            let read = attr.parse_nested_meta(|meta| {
                let name = meta
                    .path
                    .get_ident()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                if UNCHECKED.contains(&name.as_str()) {
                    errors.push(syn::Error::new_spanned(
                        &meta.path,
                        format_args!(
                            "`#[schemars({name}...)]` would put a constraint in the schema that nothing checks; \
                             write it as `#[validate({name}...)]` (`length`, `range`, `regex`, `email`, `url`, \
                             `contains`, `custom`), which checks it and puts it in the schema too"
                        ),
                    ));
                } else if name == "extend" {
                    errors.push(syn::Error::new_spanned(
                        &meta.path,
                        "`#[schemars(extend(...))]` can add schema keywords that nothing checks; describe the \
                         argument with its doc comment and check it with `#[validate(...)]`",
                    ));
                } else if name == "deprecated" {
                    errors.push(syn::Error::new_spanned(
                        &meta.path,
                        "schemars takes no `#[schemars(deprecated)]` on an argument; mark the parameter \
                         `#[deprecated]`, which puts `deprecated: true` in its schema",
                    ));
                } else if name == "inline" {
                    errors.push(syn::Error::new_spanned(
                        &meta.path,
                        "schemars takes no `#[schemars(inline)]` on an argument; to write a type's schema where it \
                         is used rather than in `$defs`, put `#[schemars(inline)]` on the type's own definition",
                    ));
                } else if !DESCRIBING.contains(&name.as_str()) {
                    errors.push(syn::Error::new_spanned(
                        &meta.path,
                        format_args!(
                            "`#[schemars({name})]` changes the schema but not what decoding accepts, so clients \
                             would be told one thing and refused another; on an argument only `title`, \
                             `description` and `example` are taken (rename with `#[serde(rename)]`, default with \
                             `#[serde(default)]`, check with `#[validate(...)]`)"
                        ),
                    ));
                }
                crate::attr::skip_value(&meta)
            });
            if let Err(error) = read {
                errors.push(syn::Error::new(
                    error.span(),
                    "this `#[schemars(...)]` cannot be read, so what it does to the schema cannot be checked; on \
                     an argument only `title`, `description` and `example` are taken",
                ));
            }
        } else if attr.path().is_ident("serde") {
            let _ = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("alias") {
                    errors.push(syn::Error::new_spanned(
                        &meta.path,
                        "`#[serde(alias)]` accepts a name the input schema does not list; clients see only the \
                         schema's names (use `rename` to change the one name)",
                    ));
                } else if meta.path.is_ident("deserialize_with") || meta.path.is_ident("with") {
                    let key = if meta.path.is_ident("with") {
                        "with"
                    } else {
                        "deserialize_with"
                    };
                    errors.push(syn::Error::new_spanned(
                        &meta.path,
                        format_args!(
                            "`#[serde({key})]` decodes the argument otherwise than its type does, while its schema \
                             still describes the type, so clients would be told one thing and refused another; \
                             take a newtype with its own `Deserialize` and `JsonSchema` (the schema of what it \
                             accepts) instead"
                        ),
                    ));
                }
                crate::attr::skip_value(&meta)
            });
        }
    }
}

/// Each argument is sent under a name of its own. serde gives a name two fields are decoded under to the first,
/// while schemars describes it by the last and lists it twice in `required` (a red team's: a call following the
/// schema was refused, one it forbids ran, and a field renamed onto a redacted argument's name took its value).
/// A flattened map takes the names no other field has, which the arguments refuse (`deny_unknown_fields`): it would
/// always be empty.
fn check_wire_names(function: &Function, errors: &mut Vec<syn::Error>) {
    let mut seen: Vec<(String, &syn::Ident)> = Vec::new();
    for (ident, ty, attrs) in function.named_inputs() {
        match crate::ast::wire(ident, attrs) {
            crate::ast::Wire::Named(name) => {
                if let Some((_, first)) = seen.iter().find(|(sent, _)| *sent == name) {
                    errors.push(syn::Error::new_spanned(
                        ident,
                        format_args!(
                            "`{}` and `{}` are both sent as `{name}`: serde would fill only the first while the \
                             input schema describes the second; give each argument a name of its own",
                            first.unraw(),
                            ident.unraw()
                        ),
                    ));
                } else {
                    seen.push((name, ident));
                }
            }
            crate::ast::Wire::Flattened if crate::ast::is_map(ty) => {
                errors.push(syn::Error::new_spanned(
                    ty,
                    format_args!(
                        "`{}` is a flattened map, which would take the names no other argument has, but a secure \
                         tool's arguments refuse names they do not declare: it would always be empty; to take \
                         names of the caller's choosing, take a map argument (`{}: HashMap<String, T>`), or the \
                         whole input as `Args<T>` with a struct of your own",
                        ident.unraw(),
                        ident.unraw()
                    ),
                ));
            }
            _ => {}
        }
    }
}

/// MCP tool names: 1 to 128 of ASCII letters, digits, `_`, `-` and `.`.
fn check_tool_name(name: &LitStr, errors: &mut Vec<syn::Error>) {
    if !valid_tool_name(&name.value()) {
        errors.push(syn::Error::new_spanned(
            name,
            format_args!(
                "invalid tool name `{}`: expected 1 to 128 ASCII letters, digits, `_`, `-` or `.`",
                name.value()
            ),
        ));
    }
}

fn valid_tool_name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The first reference in a type, however deep: the input is deserialized into an owned struct, so `&str`,
/// `Option<&str>` and `Vec<&[u8]>` cannot be arguments.
fn find_reference(ty: &Type) -> Option<&TypeReference> {
    find_in(ty, &|ty| match ty {
        Type::Reference(reference) => Some(reference),
        _ => None,
    })
}

/// The first `impl Trait` in a type, however deep.
fn find_impl_trait(ty: &Type) -> Option<&syn::TypeImplTrait> {
    find_in(ty, &|ty| match ty {
        Type::ImplTrait(impl_trait) => Some(impl_trait),
        _ => None,
    })
}

/// The first part of `ty`, itself included, that `pick` takes, looking through references, arrays, slices,
/// groups, parentheses, tuples and generic arguments.
fn find_in<'a, T>(ty: &'a Type, pick: &dyn Fn(&'a Type) -> Option<T>) -> Option<T> {
    if let Some(found) = pick(ty) {
        return Some(found);
    }
    match ty {
        Type::Reference(reference) => find_in(&reference.elem, pick),
        Type::Array(array) => find_in(&array.elem, pick),
        Type::Slice(slice) => find_in(&slice.elem, pick),
        Type::Group(group) => find_in(&group.elem, pick),
        Type::Paren(paren) => find_in(&paren.elem, pick),
        Type::Tuple(tuple) => tuple.elems.iter().find_map(|ty| find_in(ty, pick)),
        Type::Path(path) => {
            path.path
                .segments
                .iter()
                .find_map(|segment| match &segment.arguments {
                    PathArguments::AngleBracketed(generics) => {
                        generics.args.iter().find_map(|arg| match arg {
                            GenericArgument::Type(ty) => find_in(ty, pick),
                            _ => None,
                        })
                    }
                    _ => None,
                })
        }
        _ => None,
    }
}

/// An argument that must equal a redacted one holds the same secret (a red team's: `confirm` beside a redacted
/// `password` was recorded in clear; then the rule written on the redacted side): it is redacted too, or the tool
/// does not build.
fn check_must_match(function: &Function, redacted: &[String], errors: &mut Vec<syn::Error>) {
    for (ident, _, attrs) in function.named_inputs() {
        let name = ident.unraw().to_string();
        for attr in attrs.iter().filter(|a| a.path().is_ident("validate")) {
            let _ = attr.parse_nested_meta(|rule| {
                if !rule.path.is_ident("must_match") {
                    return crate::attr::skip_value(&rule);
                }
                rule.parse_nested_meta(|other| {
                    if !other.path.is_ident("other") {
                        return crate::attr::skip_value(&other);
                    }
                    let target = match other.value()?.parse::<syn::Expr>()? {
                        syn::Expr::Lit(syn::ExprLit {
                            lit: syn::Lit::Str(text),
                            ..
                        }) => text.value(),
                        syn::Expr::Path(path) => path
                            .path
                            .get_ident()
                            .map(|i| i.unraw().to_string())
                            .unwrap_or_default(),
                        _ => String::new(),
                    };
                    let target = target.strip_prefix("r#").unwrap_or(&target).to_owned();
                    let (open, secret) = match (redacted.contains(&name), redacted.contains(&target)) {
                        (false, true) => (&name, &target),
                        (true, false) => (&target, &name),
                        _ => return Ok(()),
                    };
                    errors.push(syn::Error::new_spanned(
                        &rule.path,
                        format_args!(
                            "`{open}` must equal `{secret}`, which is redacted from the audit, so it holds the same \
                             secret: redact it too (`audit_redact = [..., \"{open}\"]`; a redacted argument is sent \
                             under its own name)"
                        ),
                    ));
                    Ok(())
                })
            });
        }
    }
}

/// A redacted argument must reach the pipeline under its own name: the audit redacts by that name, so a
/// `#[serde(rename)]`, `alias` or `flatten` would let its value be recorded in clear.
fn check_redacted_names(function: &Function, redacted: &[String], errors: &mut Vec<syn::Error>) {
    check_must_match(function, redacted, errors);
    for (ident, _, attrs) in function.named_inputs() {
        let name = ident.unraw().to_string();
        if !redacted.contains(&name) {
            continue;
        }
        for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
            let _ = attr.parse_nested_meta(|meta| {
                if ["rename", "alias", "flatten"].iter().any(|key| meta.path.is_ident(key)) {
                    errors.push(syn::Error::new_spanned(
                        &meta.path,
                        format_args!(
                            "`{name}` is redacted from the audit by its name, so it cannot be renamed, aliased or \
                             flattened; rename the parameter instead"
                        ),
                    ));
                }
                // Skipped, it is no argument the client sends, so nothing under its name could be redacted (the
                // tool set refused it only as it was built, at run time).
                if ["skip", "skip_deserializing"]
                    .iter()
                    .any(|key| meta.path.is_ident(key))
                {
                    errors.push(syn::Error::new_spanned(
                        &meta.path,
                        format_args!(
                            "`{name}` is redacted from the audit, but skipped it is no argument of the tool; \
                             remove it from `audit_redact`, or the skip"
                        ),
                    ));
                }
                crate::attr::skip_value(&meta)
            });
        }
    }
}
