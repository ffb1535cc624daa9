-- Argo CD health check for dataflow.dev/DataFlowSchema.
-- Argo CD runs this with the live object in the global `obj` and expects {status, message}.
local hs = {}
local status = obj.status
if status == nil or status.phase == nil or status.phase == "" then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
  return hs
end
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end
local function condition(kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind and c.status == "True" then
      return c
    end
  end
  return nil
end
local phase = status.phase
local message = status.message
local drifted = condition("Drifted")
if drifted ~= nil and phase ~= "Applying" then
  -- the database no longer matches the applied spec (spec.policy.drift: report, or a revert awaiting approval)
  hs.status = "Degraded"
  hs.message = drifted.message or "Drifted"
  return hs
end
if phase == "Applied" or phase == "InSync" or phase == "Planned" then
  hs.status = "Healthy"
  local pending = condition("PromotionPending")
  if pending ~= nil and pending.message ~= nil then
    message = (message or phase) .. " Promotion pending: " .. pending.message
  end
elseif phase == "Planning" or phase == "Applying" then
  hs.status = "Progressing"
elseif phase == "AwaitingApproval" or phase == "WaitingForPromotion" then
  hs.status = "Suspended"
  message = status.verdict or message
  if status.approveCommand ~= nil and status.approveCommand ~= "" then
    message = (message or phase) .. "; approve with: " .. status.approveCommand
  end
elseif phase == "Blocked" or phase == "Failed" then
  hs.status = "Degraded"
  message = message or status.verdict
else
  hs.status = "Unknown"
  message = "Unknown phase " .. tostring(phase)
end
hs.message = message or phase
return hs
