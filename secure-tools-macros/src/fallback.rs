//! What an invocation expands to when it has errors: the user's function, untouched but for the argument
//! attributes rustc would reject, plus every error. IDEs keep seeing the function; the build fails only on the
//! reported problems.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{FnArg, ItemFn};

use crate::ast::is_field_attr;

/// The function without the argument attributes that only the generated struct understands.
pub fn strip_argument_attrs(item: &ItemFn) -> ItemFn {
    let mut item = item.clone();
    for arg in &mut item.sig.inputs {
        if let FnArg::Typed(typed) = arg {
            typed.attrs.retain(|attr| !is_field_attr(attr));
        }
    }
    item
}

pub fn function(item: &ItemFn, errors: Vec<syn::Error>) -> TokenStream {
    let mut tokens = strip_argument_attrs(item).into_token_stream();
    tokens.extend(errors.into_iter().map(|e| e.into_compile_error()));
    tokens
}

/// The item did not parse as a function: leave it as it was and say so.
pub fn unparsed(item: TokenStream, error: syn::Error) -> TokenStream {
    let mut tokens = item;
    tokens.extend(error.into_compile_error());
    tokens
}
