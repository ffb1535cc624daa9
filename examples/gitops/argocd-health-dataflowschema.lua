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
local phase = status.phase
local message = status.message
if phase == "Applied" or phase == "InSync" then
  hs.status = "Healthy"
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
