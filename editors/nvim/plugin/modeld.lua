-- The `:Modeld` command; the language server starts with `require('modeld').setup()`.
if vim.g.loaded_modeld then
  return
end
vim.g.loaded_modeld = true

local subcommands = { 'chat', 'explain', 'fix', 'doc', 'tests', 'model', 'apply' }

vim.api.nvim_create_user_command('Modeld', function(command)
  require('modeld').command(command)
end, {
  nargs = '+',
  range = true,
  desc = 'modeld: chat, explain|fix|doc|tests on a range, pick the model, apply the chat edit',
  complete = function(lead, line)
    if line:match('^%S+%s+%S*$') then
      return vim.tbl_filter(function(name) return vim.startswith(name, lead) end, subcommands)
    end
    return {}
  end,
})
