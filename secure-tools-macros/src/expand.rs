//! Code generation from the checked model. Nothing here can fail.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::ItemFn;

use crate::ast::{Function, ParamKind};
use crate::valid::Model;
use crate::{attr, fallback, valid};

pub fn secure_tool(args: TokenStream, item: TokenStream) -> TokenStream {
    let item_fn: ItemFn = match syn::parse2(item.clone()) {
        Ok(item_fn) => item_fn,
        Err(_) => {
            let error = syn::Error::new(Span::call_site(), "`#[secure_tool]` applies to an `async fn`");
            return fallback::unparsed(item, error);
        }
    };
    let mut errors = Vec::new();
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

fn option<T: quote::ToTokens>(value: Option<T>) -> TokenStream {
    match value {
        Some(value) => quote!(::core::option::Option::Some(#value)),
        None => quote!(::core::option::Option::None),
    }
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
    let description = option(function.docs.as_deref());
    let scopes = &model.scopes;
    let unscoped = model.unscoped;
    let redact = &model.audit_redact;
    let [read_only, destructive, idempotent, open_world] = model.hints.map(option);

    // The argument type.
    let (args_struct, args_ty) = match model.args_struct {
        Some(inner) => (TokenStream::new(), quote_spanned!(inner.span()=> #inner)),
        None => {
            let fields = function.inputs().map(|param| {
                let ParamKind::Input { ident, ty, attrs, .. } = &param.kind else { unreachable!() };
                let attrs = attrs.iter().filter(|a| crate::ast::is_field_attr(a));
                quote!(#(#attrs)* #ident: #ty,)
            });
            let serde_crate = format!("{private}::serde").replace(' ', "");
            let schemars_crate = format!("{private}::schemars").replace(' ', "");
            let validator_crate = format!("{private}::validator").replace(' ', "");
            let struct_def = quote! {
                #[derive(#private::serde::Deserialize, #private::schemars::JsonSchema, #private::validator::Validate)]
                #[serde(crate = #serde_crate, deny_unknown_fields)]
                #[schemars(crate = #schemars_crate)]
                #[validate(crate = #validator_crate)]
                struct __SecureToolArgs {
                    #(#fields)*
                }
            };
            (struct_def, quote!(__SecureToolArgs))
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
                context_lets.push(quote_spanned! {ty.span()=>
                    let #local = <#ty as #private::FromCallContext<__S>>::from_call_context(__cx, __state);
                });
                context_bounds.push(quote_spanned!(ty.span()=> #ty: #private::FromCallContext<__S>,));
                quote!(#local)
            }
            ParamKind::Receiver => unreachable!("rejected by valid::check"),
        })
        .collect();

    // The result.
    let output = &function.output;
    let plain = output.is_plain();
    let ok_ty = match output.ok {
        Some(ty) => quote_spanned!(ty.span()=> #ty),
        None => quote!(()),
    };
    let output_ty = if plain { ok_ty.clone() } else { quote!(#private::Json<#ok_ty>) };
    let wrap = if plain { quote!(|__ok| __ok) } else { quote!(#private::Json) };
    let finish = if output.is_result {
        quote!(#private::finish(#private::Result::map(__result, #wrap)))
    } else {
        quote!(#private::finish(#private::Ok::<_, #private::ToolError>((#wrap)(__result))))
    };

    let struct_doc = format!("The secure tool made from the function `{ident}`: register it with `ToolSetBuilder::tool::<{ident}>()`.");
    quote! {
        #stripped

        #[doc = #struct_doc]
        #[allow(non_camel_case_types, dead_code)]
        #vis struct #ident {
            _private: (),
        }

        const _: () = {
            #args_struct

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
                };
                type Args = #args_ty;
                type Output = #output_ty;

                fn invoke(
                    __args: Self::Args,
                    __cx: &#private::CallContext,
                    __state: &__S,
                ) -> #private::ToolFuture {
                    #(#context_lets)*
                    #private::Box::pin(async move {
                        let __result = #ident(#(#call_args),*).await;
                        #finish
                    })
                }
            }
        };
    }
}
