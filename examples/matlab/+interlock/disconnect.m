function disconnect(eng)
%DISCONNECT Free an engine from interlock.connect: the sessions opened through
%   it are closed (their locks go at once) and the connection ends. Using eng
%   afterwards raises interlock:invalidArgument.
  interlock_mex('disconnect', eng);
end
