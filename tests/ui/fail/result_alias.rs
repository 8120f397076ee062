use secure_tools::secure_tool;

/// A crate-wide result with a text error, as many crates have.
type Res<T> = Result<T, String>;

/// Looks a word up.
#[secure_tool(scope = "dictionary.read")]
async fn lookup(word: String) -> Res<String> {
    Err(format!("no entry for {word}"))
}

fn main() {
    let _ = secure_tools::ToolSet::builder(()).tool::<lookup>();
}
