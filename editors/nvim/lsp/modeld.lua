-- The modeld language server's defaults, found by `vim.lsp.config('modeld')` on the runtimepath.
return {
  cmd = { 'modeld', 'lsp' },
  filetypes = {
    'rust', 'python', 'javascript', 'javascriptreact', 'typescript', 'typescriptreact',
    'go', 'c', 'cpp', 'java', 'lua',
  },
  root_markers = { '.git' },
}
