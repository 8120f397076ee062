use secure_tools::secure_tool;

struct Files;

impl Files {
    /// Reads a file.
    #[secure_tool(scope = "files.read")]
    async fn read_file(&self, path: String) -> String {
        path
    }
}

fn main() {}
