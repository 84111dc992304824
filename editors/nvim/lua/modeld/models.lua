-- `:Modeld model`: picks the model from those the daemon has (`modeld list`).
local M = {}

--- The installed models' names from `modeld list`'s table.
function M.parse_list(output)
  local names = {}
  for line in vim.gsplit(output or '', '\n', { plain = true }) do
    local name = line:match('^(%S+)')
    if name and name ~= 'NAME' then
      table.insert(names, name)
    end
  end
  return names
end

function M.pick()
  local config = require('modeld').config
  local program = (config.cmd and config.cmd[1]) or 'modeld'
  vim.system({ program, 'list' }, { text = true, env = config.cmd_env }, vim.schedule_wrap(function(result)
    local names = M.parse_list(result.stdout)
    if result.code ~= 0 or #names == 0 then
      vim.notify('modeld: no models (is the daemon running? see :checkhealth modeld)', vim.log.levels.WARN)
      return
    end
    vim.ui.select(names, { prompt = 'modeld model' }, function(choice)
      if choice then
        require('modeld').set_model(choice)
        vim.notify('modeld: using ' .. choice)
      end
    end)
  end))
end

return M
