//! Code generation from the checked model. Nothing here can fail.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ItemFn;
use syn::spanned::Spanned;

use crate::ast::{Function, ParamKind};
use crate::valid::Model;
use crate::{attr, fallback, valid};

pub fn secure_tool(args: TokenStream, item: TokenStream) -> TokenStream {
    let item_fn: ItemFn = match syn::parse2(item.clone()) {
        Ok(item_fn) => item_fn,
        Err(_) => {
            let error = fallback::not_a_function(&item);
            return fallback::unparsed(item, error);
        }
    };
    let mut errors = Vec::new();
    // A second `#[secure_tool]` on the same function would declare the tool type again: reported here, on the
    // second, which is then dropped so that it does not expand.
    let mut item_fn = item_fn;
    item_fn.attrs.retain(|attr| {
        let again = attr
            .path()
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "secure_tool");
        if again {
            errors.push(syn::Error::new_spanned(
                attr,
                "`#[secure_tool]` is applied twice; a function is one tool: keep one attribute, or write a second \
                 function for a second tool",
            ));
        }
        !again
    });
    let args = match attr::parse(args, &mut errors) {
        Ok(args) => args,
        Err(error) => {
            errors.push(error);
            return fallback::function(&item_fn, errors);
        }
    };
    let function = Function::from_item(&item_fn);
    let model = valid::check(&args, &function, &mut errors);
    if !errors.is_empty() {
        return fallback::function(&item_fn, errors);
    }
    generate(&model)
}

/// The name of the struct of a tool's inline arguments: `ArgsOf_close_ticket`, as `ArgsOf<close_ticket>` reads.
pub fn args_struct_name(tool: &syn::Ident) -> syn::Ident {
    use syn::ext::IdentExt as _;
    format_ident!("ArgsOf_{}", tool.unraw())
}

fn option<T: quote::ToTokens>(value: Option<T>) -> TokenStream {
    match value {
        Some(value) => quote!(::core::option::Option::Some(#value)),
        None => quote!(::core::option::Option::None),
    }
}

/// `::secure_tools::__private` with every token at `span`, so that rustc, which reports a trait bound on the whole
/// path or type, points at the user's tokens rather than at the attribute.
fn private_at(span: Span) -> TokenStream {
    quote_spanned!(span=> ::secure_tools::__private)
}

/// The spans of the first and the last token of a user's type. Generated code that starts at the one and ends at the
/// other is reported over the whole type, as `syn::Error::new_spanned` does, where `Spanned::span` would give only
/// the first token on stable.
fn first_last(tokens: &dyn ToTokens) -> (Span, Span) {
    let mut tokens = tokens.to_token_stream().into_iter();
    let first = tokens
        .next()
        .map_or_else(Span::call_site, |token| token.span());
    let last = tokens.last().map_or(first, |token| token.span());
    (first, last)
}

/// `#[validate(range(exclusive_min = .., exclusive_max = ..))]` is checked by validator, but schemars puts only
/// `min` and `max` in the schema: the exclusive bounds are added as `exclusiveMinimum` and `exclusiveMaximum`, so a
/// client following the schema is not refused for a value the schema allowed. A bound written as a string (a path,
/// as validator and schemars accept) is read as that path.
///
/// Likewise `length` on a map (validator counts its entries; schemars writes length keywords for strings and
/// arrays only): added as `minProperties` and `maxProperties` (a red team's: the schema said nothing, and a third
/// tag was refused).
fn exclusive_bounds(attrs: &[syn::Attribute], ty: &syn::Type) -> TokenStream {
    let mut bounds = Vec::new();
    let map = crate::ast::is_map(ty);
    // An `f32` argument's range, where its rules give none: a number beyond it is refused (see
    // `__private::nested::finite_f32`), where serde would take it as infinity.
    let (mut low, mut high) = (false, false);
    for attr in attrs.iter().filter(|a| a.path().is_ident("validate")) {
        // A rule that cannot be read is reported by validator's own derive; nothing is added for it here.
        let _ = attr.parse_nested_meta(|rule| {
            let length = map && rule.path.is_ident("length");
            if !rule.path.is_ident("range") && !length {
                return attr::skip_value(&rule);
            }
            rule.parse_nested_meta(|bound| {
                if !length {
                    low |= bound.path.is_ident("min") || bound.path.is_ident("exclusive_min");
                    high |= bound.path.is_ident("max") || bound.path.is_ident("exclusive_max");
                }
                let keywords: &[&str] = if length {
                    if bound.path.is_ident("min") {
                        &["minProperties"]
                    } else if bound.path.is_ident("max") {
                        &["maxProperties"]
                    } else if bound.path.is_ident("equal") {
                        &["minProperties", "maxProperties"]
                    } else {
                        &[]
                    }
                } else if bound.path.is_ident("exclusive_min") {
                    &["exclusiveMinimum"]
                } else if bound.path.is_ident("exclusive_max") {
                    &["exclusiveMaximum"]
                } else {
                    &[]
                };
                if keywords.is_empty() {
                    return attr::skip_value(&bound);
                }
                let value: syn::Expr = bound.value()?.parse()?;
                let value = match value {
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(path),
                        ..
                    }) => path.parse::<syn::Expr>()?,
                    other => other,
                };
                for keyword in keywords {
                    bounds.push(quote!(#[schemars(extend(#keyword = #value))]));
                }
                Ok(())
            })
        });
    }
    let scalar = crate::ast::option_inner(ty).unwrap_or(ty);
    if crate::ast::type_name(scalar).is_some_and(|name| name == "f32") {
        let limit = proc_macro2::Literal::f64_unsuffixed(f64::from(f32::MAX));
        if !low {
            bounds.push(quote!(#[schemars(extend("minimum" = -#limit))]));
        }
        if !high {
            bounds.push(quote!(#[schemars(extend("maximum" = #limit))]));
        }
    }
    quote!(#(#bounds)*)
}

fn generate(model: &Model) -> TokenStream {
    let private = quote!(::secure_tools::__private);
    let function = model.function;
    let item = function.original;
    let vis = &item.vis;
    let ident = &item.sig.ident;
    let stripped = fallback::strip_argument_attrs(item);

    // Metadata.
    let name = &model.tool_name;
    let title = option(model.title.as_deref());
    let description = option(function.docs.as_ref());
    let scopes = &model.scopes;
    let unscoped = model.unscoped;
    let redact = &model.audit_redact;
    let [read_only, destructive, idempotent, open_world] = model.hints.map(option);

    // The argument type. Named after the tool, as rustc names it in errors (`expected &ArgsOf_close_ticket, found
    // ArgsOf_close_ticket`; two tools' structs told apart), and unnameable in the `const _` block all the same.
    let args_name = args_struct_name(ident);
    let (args_struct, args_ty) = match model.args_struct {
        Some(inner) => (TokenStream::new(), quote_spanned!(inner.span()=> #inner)),
        None => {
            let fields = function.inputs().map(|param| {
                let ParamKind::Input {
                    ident, ty, attrs, ..
                } = &param.kind
                else {
                    unreachable!()
                };
                let bounds = exclusive_bounds(attrs, ty);
                let attrs = attrs.iter().filter(|a| crate::ast::is_field_attr(a));
                quote!(#(#attrs)* #bounds pub #ident: #ty,)
            });
            // A context type the attribute did not recognise by its name is an argument here: said on its type.
            let assertions = function.inputs().map(|param| {
                let ParamKind::Input { ty, .. } = &param.kind else {
                    unreachable!()
                };
                let (first, last) = first_last(ty);
                let private = private_at(first);
                let close = quote_spanned!(last=> >);
                let parens = quote_spanned!(last=> ());
                quote_spanned!(first=> #private::assert_argument::<#ty #close #parens;)
            });
            let serde_crate = format!("{private}::serde").replace(' ', "");
            let schemars_crate = format!("{private}::schemars").replace(' ', "");
            let validator_crate = format!("{private}::validator").replace(' ', "");
            // The derives below emit bare `Some`, `None`, `.into()` and `Cow::from`, which a crate under
            // `#![no_implicit_prelude]` lacks. Only those names are imported, not a prelude glob, so the field types
            // the user wrote still resolve to the user's items. `pub` because the struct is the `Args` of a trait
            // impl on the tool type, which may be `pub`; the `const _` block keeps it unnameable all the same.
            // The derives also call `default()` (`#[serde(default)]`), `to_string()` (a `regex` or `contains` rule)
            // and `validate()` (`nested`) as methods, and write `std::collections` without a leading `::`: those
            // traits are imported unnamed, and `std` declared, so neither a missing prelude nor a user who never
            // imported `validator::Validate` breaks the expansion.
            let struct_def = quote! {
                #[allow(unused_imports)]
                use ::core::option::Option::{None, Some};
                #[allow(unused_imports)]
                use ::core::convert::{From as _, Into as _};
                #[allow(unused_imports)]
                use ::core::default::Default as _;
                #[allow(unused_imports)]
                use ::std::string::ToString as _;
                #[allow(unused_imports)]
                use #private::validator::Validate as _;
                #[allow(unused_extern_crates)]
                extern crate std;

                const _: () = {
                    #(#assertions)*
                };

                #[derive(#private::serde::Deserialize, #private::schemars::JsonSchema, #private::validator::Validate)]
                #[allow(missing_docs, non_camel_case_types)]
                #[serde(crate = #serde_crate, deny_unknown_fields)]
                #[schemars(crate = #schemars_crate)]
                #[validate(crate = #validator_crate)]
                pub struct #args_name {
                    #(#fields)*
                }

            };
            (struct_def, quote!(#args_name))
        }
    };

    // The call: arguments from `__args`, context from the call, in the function's own order.
    let mut context_lets = Vec::new();
    let mut context_bounds = Vec::new();
    let call_args: Vec<TokenStream> = function
        .params
        .iter()
        .enumerate()
        .map(|(i, param)| match &param.kind {
            ParamKind::Input { ident, .. } => quote!(__args.#ident),
            ParamKind::Args { .. } => quote!(#private::Args(__args)),
            ParamKind::Context { ty, .. } => {
                let local = format_ident!("__context_{}", i);
                // Only the path carries the user's span (for rustc to report a missing `FromCallContext` there):
                // the locals and the state's type are named at the call site, which a type passed through a
                // `macro_rules!` (`$ctx:ident`) would otherwise hide them from.
                let (cx, state, state_ty) = (quote!(__cx), quote!(__state), quote!(__S));
                let from = quote_spanned!(ty.span()=> <#ty as #private::FromCallContext<#state_ty>>::from_call_context);
                context_lets.push(quote! {
                    let #local = #from(#cx, #state);
                });
                let (first, last) = first_last(ty);
                let private = private_at(first);
                let close = quote_spanned!(last=> >);
                let state_ty = quote!(__S);
                context_bounds.push(quote_spanned!(first=> #ty: #private::FromCallContext<#state_ty #close,));
                quote!(#local)
            }
            ParamKind::Receiver => unreachable!("rejected by valid::check"),
        })
        .collect();

    // The result. A success type that is not a tool output is reported once, on `type Output` and spanned on the
    // user's type: `__finish` takes `Self::Output` generically, so its body proves `IntoToolOutput` from the trait's
    // own bound instead of checking the concrete type a second time. An error type that does not convert into
    // `ToolError` is reported on that type.
    let output = &function.output;
    let plain = output.is_plain();
    let ok_ty = match output.ok {
        Some(ty) => quote!(#ty),
        None => quote!(()),
    };
    let output_ty = if plain {
        ok_ty.clone()
    } else {
        let (first, last) = first_last(&ok_ty);
        let private = private_at(first);
        let close = quote_spanned!(last=> >);
        quote_spanned!(first=> #private::Json<#ok_ty #close)
    };
    let wrap = if plain {
        quote!(|__ok| __ok)
    } else {
        quote!(#private::Json)
    };
    // A type wrapped in `Json` because its name is not one of those sent as they are may still be one of them under
    // another name (`type Res<T> = Result<T, String>`): a compile error on the user's type, naming the fix.
    let named_probe = if plain {
        TokenStream::new()
    } else {
        // The verdict's expression starts on the type's first token and ends on its last: rustc reports the
        // unmet bound over the whole type.
        let (first, last) = first_last(&ok_ty);
        let probe = private_at(first);
        let close = quote_spanned!(last=> >);
        let parens = quote_spanned!(last=> ());
        let verdict = quote_spanned! {first=>
            #probe::output_probe::Probe::<#ok_ty #close::REFERENCE.verdict #parens
        };
        let assertion = quote! {
            #private::output_probe::assert_named(
                #private::output_probe::Probe::<#ok_ty>::REFERENCE,
                #verdict,
            )
        };
        quote! {
            fn __output_named() {
                #[allow(unused_imports)]
                use #private::output_probe::{General as _, Specific as _};
                #assertion;
            }
        }
    };
    let result = if output.is_result {
        // Spanned on the error type, where rustc then reports a missing `Into<ToolError>`. A call of a generic
        // helper rather than `Into::into` passed to `map_err` (which reports the bound twice) or called in a closure
        // on the user's tokens (which trips clippy's `redundant_closure` and `useless_conversion` in the user's crate).
        let span = output
            .err
            .or(output.declared)
            .map_or_else(Span::call_site, |ty| first_last(ty).0);
        // The local is named at the call site (a `macro_rules!` metavariable's hygiene would hide it), but placed
        // on the error type: rustc reports an unmet bound on a call's argument there.
        let error = proc_macro2::Ident::new("__error", Span::call_site().located_at(span));
        let convert = quote_spanned!(span=> #private::into_tool_error(#error));
        quote! {
            match __result {
                #private::Ok(__ok) => #private::Ok((#wrap)(__ok)),
                #private::Err(__error) => #private::Err(#convert),
            }
        }
    } else {
        quote!(#private::Ok::<_, #private::ToolError>((#wrap)(__result)))
    };

    // Limits and the argument rule.
    let rate = option(model.rate.map(|(count, secs)| {
        quote!(#private::RateSpec { count: #count, period: #private::Duration::from_secs(#secs) })
    }));
    let timeout = option(
        model
            .timeout_ms
            .map(|ms| quote!(#private::Duration::from_millis(#ms))),
    );
    let concurrency = option(model.concurrency);
    // The struct generated for inline arguments has `deny_unknown_fields`; a user's `Args<T>` may not.
    let denies_unknown = model.args_struct.is_none();
    let authorize = model.authorize.map(|rule| {
        let (args, call) = (quote!(__args), quote!(__call));
        let call = quote_spanned!(rule.span()=> #rule(#args, #call));
        quote! {
            const HAS_ARGUMENT_RULE: bool = true;

            fn authorize<'__a>(
                __args: &'__a <Self as #private::ToolInput>::Args,
                __call: &'__a #private::GuardCall<'__a>,
            ) -> impl #private::Future<Output = #private::Result<(), #private::ToolError>> + #private::Send + '__a {
                #call
            }
        }
    });

    let validate_nested = if model.args_struct.is_none() {
        validate_nested(function)
    } else {
        TokenStream::new()
    };

    let struct_doc = format!(
        "The secure tool made from the function `{ident}`: register it with `ToolSetBuilder::tool::<{ident}>()`."
    );
    quote! {
        #stripped

        #[doc = #struct_doc]
        #[allow(non_camel_case_types, dead_code)]
        #vis struct #ident {
            _private: (),
        }

        const _: () = {
            #args_struct
            #named_probe

            fn __finish<__T, __S>(
                __result: #private::Result<<__T as #private::SecureTool<__S>>::Output, #private::ToolError>,
            ) -> #private::Result<#private::ToolOutput, #private::ToolError>
            where
                __T: #private::SecureTool<__S>,
            {
                #private::finish(__result)
            }

            impl #private::ToolInput for #ident {
                type Args = #args_ty;
                #validate_nested
            }

            impl<__S> #private::SecureTool<__S> for #ident
            where
                __S: #private::Send + #private::Sync + 'static,
                #(#context_bounds)*
            {
                const META: #private::ToolMeta = #private::ToolMeta {
                    name: #name,
                    title: #title,
                    description: #description,
                    scopes: &[#(#scopes),*],
                    unscoped: #unscoped,
                    audit_redact: &[#(#redact),*],
                    read_only: #read_only,
                    destructive: #destructive,
                    idempotent: #idempotent,
                    open_world: #open_world,
                    rate: #rate,
                    timeout: #timeout,
                    concurrency: #concurrency,
                    denies_unknown_arguments: #denies_unknown,
                };
                type Output = #output_ty;

                // An argument marked `#[deprecated]` is a deprecated field of the struct: passing it on is no use of it.
                #[allow(deprecated)]
                fn invoke(
                    __args: Self::Args,
                    __cx: &#private::CallContext,
                    __state: &__S,
                ) -> impl #private::Future<
                    Output = #private::Result<#private::ToolOutput, #private::ToolError>,
                > + #private::Send + 'static {
                    #(#context_lets)*
                    async move {
                        let __result = #ident(#(#call_args),*).await;
                        __finish::<Self, __S>(#result)
                    }
                }

                #authorize
            }
        };
    }
}

/// `ToolInput::validate_nested` for inline arguments: each argument's errors named as it is sent (validator names
/// them by the Rust field: `r#type`, `file_name`), then the rules of each argument's own type checked where the
/// type derives `Validate` (through `Option`, `Box` and `Arc`, and flattened), unless the argument is marked
/// `#[validate(nested)]` or `#[validate(skip)]` (see `__private::nested`); an `f32` argument checked finite.
fn validate_nested(function: &Function) -> TokenStream {
    let private = quote!(::secure_tools::__private);
    let mut renames = Vec::new();
    let mut steps = Vec::new();
    for (ident, ty, attrs) in function.named_inputs() {
        let rust = ident.to_string();
        // A flattened struct's rules are looked into too, its errors under its Rust name (no argument's name).
        let key = match crate::ast::wire(ident, attrs) {
            crate::ast::Wire::Named(sent) => sent,
            crate::ast::Wire::Flattened => rust.clone(),
            crate::ast::Wire::Skipped => continue,
        };
        if rust != key {
            renames.push(quote!((#rust, #key)));
        }
        if crate::ast::skips_nested(attrs) {
            continue;
        }
        // `Option<Box<T>>` and so on: each `Option` looked into, each `Box`, `Arc` or `Rc` seen through.
        let mut value = quote!(&__args.#ident);
        let mut ty: &syn::Type = ty;
        let mut layers = Vec::new();
        loop {
            if let Some(inner) = crate::ast::option_inner(ty) {
                let bound = format_ident!("__layer{}", layers.len());
                layers.push((bound.clone(), value));
                value = quote!(#bound);
                ty = inner;
            } else if let Some(inner) = crate::ast::pointer_inner(ty) {
                value = quote!(&**#value);
                ty = inner;
            } else {
                break;
            }
        }
        let mut check = if crate::ast::type_name(ty).is_some_and(|name| name == "f32") {
            quote!(#private::nested::finite_f32(__errors, #key, *#value);)
        } else {
            quote!((&#private::nested::Probe(#value)).__secure_tools_check(__errors, #key);)
        };
        for (bound, outer) in layers.into_iter().rev() {
            check = quote!(if let ::core::option::Option::Some(#bound) = #outer { #check });
        }
        steps.push(check);
    }
    if steps.is_empty() && renames.is_empty() {
        return TokenStream::new();
    }
    // Every key taken out before any is put back: renames may cross (`a` sent as `b`, `b` as `a`).
    let renames = (!renames.is_empty())
        .then(|| quote!(#private::nested::rename(__errors, &[#(#renames),*]);));
    quote! {
        // An argument marked `#[deprecated]` is a deprecated field of the struct: reading it is no use of it.
        #[allow(unused_imports, deprecated)]
        fn validate_nested(
            __args: &<Self as #private::ToolInput>::Args,
            __errors: &mut #private::validator::ValidationErrors,
        ) {
            use #private::nested::{Unvalidated as _, Validated as _};
            #renames
            #(#steps)*
        }
    }
}
