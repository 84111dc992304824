-- `:checkhealth modeld`: Neovim's version, the `modeld` program, the daemon, the client.
local M = {}

function M.check()
  vim.health.start('modeld')
  if vim.fn.has('nvim-0.11') == 0 then
    vim.health.error('Neovim 0.11 or newer is needed (vim.lsp.config and vim.lsp.enable)')
    return
  end
  local modeld = require('modeld')
  if modeld.uses_own_ghost_text() then
    vim.health.ok('ghost text: the plugin renders it (modeld/inlineCompletion)')
  else
    vim.health.ok('ghost text: Neovim\'s vim.lsp.inline_completion')
  end
  local config = modeld.config
  local program = (config.cmd and config.cmd[1]) or 'modeld'
  if vim.fn.executable(program) == 0 then
    vim.health.error('`' .. program .. '` is not on PATH', {
      'Run scripts/quickstart.sh from a clone of modeld, or give the path: require("modeld").setup({ cmd = { "/path/to/modeld", "lsp" } })',
    })
    return
  end
  local result = vim.system({ program, '--version' }, { text = true, env = config.cmd_env }):wait(10000)
  local output = (result.stdout or '') .. (result.stderr or '')
  local version = output:match('modeld version is (%S+)')
  if version then
    vim.health.ok('the modeld daemon answers (version ' .. version .. ')')
  else
    vim.health.warn('the modeld daemon is not running (no answer at OLLAMA_HOST)', {
      '`modeld lsp` starts it when it starts; or run `modeld serve`',
      'its log: ~/.cache/modeld/logs/serve.log',
    })
  end
  local clients = vim.lsp.get_clients({ name = 'modeld' })
  if #clients > 0 then
    vim.health.ok(string.format('%d modeld client(s) running', #clients))
  else
    vim.health.info('no modeld client is running yet (it starts with a file of a configured filetype)')
  end
end

return M
