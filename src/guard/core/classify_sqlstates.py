"""SQLSTATEs by exception class name, for drivers that name the error instead of printing it.

psycopg 3, psycopg2 and asyncpg print `psycopg.errors.UndefinedColumn: …` or
`asyncpg.exceptions.UndefinedColumnError: …` and never the code itself, yet the rules and the
page speak SQLSTATE. The table below was generated from the pinned drivers' own class
attributes (psycopg `sqlstate`, psycopg2 `pgcode`, asyncpg `sqlstate`) and is kept as data so
the core needs none of them installed. Names are normalised (lower case, without asyncpg's
`Postgres` prefix and `Error` suffix) so one entry serves all three drivers.
"""

from __future__ import annotations

# SQLSTATE:normalised-class-name pairs; warnings (01xxx, 02xxx) left out because they never
# raise. The DB-API base classes (ProgrammingError, OperationalError, DataError, …) carry no
# SQLSTATE of their own and are deliberately absent.
_TABLE = """
03000:sqlstatementnotyetcomplete 08000:connection 08000:connectionexception
08001:clientcannotconnect 08001:sqlclientunabletoestablishsqlconnection
08003:connectiondoesnotexist 08004:connectionrejection
08004:sqlserverrejectedestablishmentofsqlconnection 08006:connectionfailure
08007:transactionresolutionunknown 08P01:protocolviolation 09000:triggeredaction
09000:triggeredactionexception 0A000:featurenotsupported 0A000:invalidcachedstatement
0B000:invalidtransactioninitiation 0F000:locator 0F000:locatorexception
0F001:invalidlocatorspecification 0L000:invalidgrantor 0LP01:invalidgrantoperation
0P000:invalidrolespecification 0Z000:diagnostics 0Z000:diagnosticsexception
0Z002:stackeddiagnosticsaccessedwithoutactivehandler 10608:invalidargumentforxquery
20000:casenotfound 21000:cardinalityviolation 22000:dataexception
22002:nullvaluenoindicatorparameter 22003:numericvalueoutofrange 22004:nullvaluenotallowed
22005:errorinassignment 22007:invaliddatetimeformat 22008:datetimefieldoverflow
22009:invalidtimezonedisplacementvalue 2200B:escapecharacterconflict
2200C:invaliduseofescapecharacter 2200D:invalidescapeoctet 2200F:zerolengthcharacterstring
2200G:mostspecifictypemismatch 2200H:sequencegeneratorlimitexceeded 2200L:notanxmldocument
2200M:invalidxmldocument 2200N:invalidxmlcontent 2200S:invalidxmlcomment
2200T:invalidxmlprocessinginstruction 22010:invalidindicatorparametervalue 22011:substring
22012:divisionbyzero 22013:invalidprecedingorfollowingsize
22014:invalidargumentforntilefunction 22015:intervalfieldoverflow
22016:invalidargumentfornthvaluefunction 22018:invalidcharactervalueforcast
22019:invalidescapecharacter 2201B:invalidregularexpression
2201E:invalidargumentforlogarithm 2201F:invalidargumentforpowerfunction
2201G:invalidargumentforwidthbucketfunction 2201W:invalidrowcountinlimitclause
2201X:invalidrowcountinresultoffsetclause 22021:characternotinrepertoire
22022:indicatoroverflow 22023:invalidparametervalue 22024:unterminatedcstring
22025:invalidescapesequence 22026:stringdatalengthmismatch 22027:trim 2202E:arraysubscript
2202G:invalidtablesamplerepeat 2202H:invalidtablesampleargument
22030:duplicatejsonobjectkeyvalue 22031:invalidargumentforsqljsondatetimefunction
22032:invalidjsontext 22033:invalidsqljsonsubscript 22034:morethanonesqljsonitem
22035:nosqljsonitem 22036:nonnumericsqljsonitem 22037:nonuniquekeysinajsonobject
22038:singletonsqljsonitemrequired 22039:sqljsonarraynotfound 2203A:sqljsonmembernotfound
2203B:sqljsonnumbernotfound 2203C:sqljsonobjectnotfound 2203D:toomanyjsonarrayelements
2203E:toomanyjsonobjectmembers 2203F:sqljsonscalarrequired
2203G:sqljsonitemcannotbecasttotargettype 22P01:floatingpoint 22P01:floatingpointexception
22P02:invalidtextrepresentation 22P03:invalidbinaryrepresentation 22P04:badcopyfileformat
22P05:untranslatablecharacter 22P06:nonstandarduseofescapecharacter
23000:integrityconstraintviolation 23001:restrictviolation 23502:notnullviolation
23503:foreignkeyviolation 23505:uniqueviolation 23514:checkviolation
23P01:exclusionviolation 24000:invalidcursorstate 25000:invalidtransactionstate
25001:activesqltransaction 25002:branchtransactionalreadyactive
25003:inappropriateaccessmodeforbranchtransaction
25004:inappropriateisolationlevelforbranchtransaction
25005:noactivesqltransactionforbranchtransaction 25006:readonlysqltransaction
25007:schemaanddatastatementmixingnotsupported 25008:heldcursorrequiressameisolationlevel
25P01:noactivesqltransaction 25P02:infailedsqltransaction
25P03:idleintransactionsessiontimeout 25P04:transactiontimeout 26000:invalidsqlstatementname
27000:triggereddatachangeviolation 28000:invalidauthorizationspecification
28P01:invalidpassword 2B000:dependentprivilegedescriptorsstillexist
2BP01:dependentobjectsstillexist 2D000:invalidtransactiontermination 2F000:sqlroutine
2F000:sqlroutineexception 2F002:modifyingsqldatanotpermitted
2F003:prohibitedsqlstatementattempted 2F004:readingsqldatanotpermitted
2F005:functionexecutednoreturnstatement 34000:invalidcursorname 38000:externalroutine
38000:externalroutineexception 38001:containingsqlnotpermitted
38002:modifyingexternalroutinesqldatanotpermitted 38002:modifyingsqldatanotpermittedext
38003:prohibitedexternalroutinesqlstatementattempted
38003:prohibitedsqlstatementattemptedext 38004:readingexternalroutinesqldatanotpermitted
38004:readingsqldatanotpermittedext 39000:externalroutineinvocation
39000:externalroutineinvocationexception 39001:invalidsqlstatereturned
39004:nullvalueinexternalroutinenotallowed 39004:nullvaluenotallowedext
39P01:triggerprotocolviolated 39P02:srfprotocolviolated 39P03:eventtriggerprotocolviolated
3B000:savepoint 3B000:savepointexception 3B001:invalidsavepointspecification
3D000:invalidcatalogname 3F000:invalidschemaname 40000:transactionrollback
40001:serialization 40001:serializationfailure 40002:transactionintegrityconstraintviolation
40003:statementcompletionunknown 40P01:deadlockdetected
42000:syntaxerrororaccessruleviolation 42000:syntaxoraccess 42501:insufficientprivilege
42601:syntax 42602:invalidname 42611:invalidcolumndefinition 42622:nametoolong
42701:duplicatecolumn 42702:ambiguouscolumn 42703:undefinedcolumn 42704:undefinedobject
42710:duplicateobject 42712:duplicatealias 42723:duplicatefunction 42725:ambiguousfunction
42803:grouping 42804:datatypemismatch 42809:wrongobjecttype 42830:invalidforeignkey
42846:cannotcoerce 42883:undefinedfunction 428C9:generatedalways 42939:reservedname
42P01:undefinedtable 42P02:undefinedparameter 42P03:duplicatecursor 42P04:duplicatedatabase
42P05:duplicatepreparedstatement 42P06:duplicateschema 42P07:duplicatetable
42P08:ambiguousparameter 42P09:ambiguousalias 42P10:invalidcolumnreference
42P11:invalidcursordefinition 42P12:invaliddatabasedefinition
42P13:invalidfunctiondefinition 42P14:invalidpreparedstatementdefinition
42P15:invalidschemadefinition 42P16:invalidtabledefinition 42P17:invalidobjectdefinition
42P18:indeterminatedatatype 42P19:invalidrecursion 42P20:windowing 42P21:collationmismatch
42P22:indeterminatecollation 44000:withcheckoptionviolation 53000:insufficientresources
53100:diskfull 53200:outofmemory 53300:toomanyconnections 53400:configurationlimitexceeded
54000:programlimitexceeded 54001:statementtoocomplex 54011:toomanycolumns
54023:toomanyarguments 55000:objectnotinprerequisitestate 55006:objectinuse
55P02:cantchangeruntimeparam 55P03:locknotavailable 55P04:unsafenewenumvalueusage
57000:operatorintervention 57014:querycanceled 57P01:adminshutdown 57P02:crashshutdown
57P03:cannotconnectnow 57P04:databasedropped 57P05:idlesessiontimeout 58000:system 58030:io
58P01:undefinedfile 58P02:duplicatefile 58P03:filenametoolong 72000:snapshottooold
F0000:configfile F0001:lockfileexists HV000:fdw HV001:fdwoutofmemory
HV002:fdwdynamicparametervalueneeded HV004:fdwinvaliddatatype HV005:fdwcolumnnamenotfound
HV006:fdwinvaliddatatypedescriptors HV007:fdwinvalidcolumnname HV008:fdwinvalidcolumnnumber
HV009:fdwinvaliduseofnullpointer HV00A:fdwinvalidstringformat HV00B:fdwinvalidhandle
HV00C:fdwinvalidoptionindex HV00D:fdwinvalidoptionname HV00J:fdwoptionnamenotfound
HV00K:fdwreplyhandle HV00L:fdwunabletocreateexecution HV00M:fdwunabletocreatereply
HV00N:fdwunabletoestablishconnection HV00P:fdwnoschemas HV00Q:fdwschemanotfound
HV00R:fdwtablenotfound HV010:fdwfunctionsequence HV014:fdwtoomanyhandles
HV021:fdwinconsistentdescriptorinformation HV024:fdwinvalidattributevalue
HV090:fdwinvalidstringlengthorbufferlength HV091:fdwinvaliddescriptorfieldidentifier
P0000:plpgsql P0001:raise P0001:raiseexception P0002:nodatafound P0003:toomanyrows
P0004:assert P0004:assertfailure XX000:internalerror_ XX000:internalserver
XX001:datacorrupted XX002:indexcorrupted
"""

_BY_NAME: dict[str, str] = {
    name: code for code, _, name in (pair.partition(":") for pair in _TABLE.split())
}

# Python's own exceptions whose names collide with a driver class after normalisation: an
# unqualified `SyntaxError: invalid syntax` is Python's, not PostgreSQL's 42601.
_BUILTIN_COLLISIONS = frozenset(
    {"ConnectionError", "FloatingPointError", "IOError", "SyntaxError", "SystemError"}
)
_DRIVERS = frozenset({"psycopg", "psycopg2", "asyncpg"})


def normalise(name: str) -> str:
    """The table key for an exception class name (unqualified)."""
    key = name.lower()
    if key.startswith("postgres") and len(key) > 8:
        key = key[8:]
    if key.endswith("error") and len(key) > 5:
        key = key[:-5]
    return key


def sqlstate_for_class(qualified: str) -> str | None:
    """The SQLSTATE a driver exception class carries, from its (dotted) name as printed.

    Qualified names count only under a PostgreSQL driver's package; unqualified names count
    unless they are one of Python's built-in exceptions.
    """
    head, _, last = qualified.rpartition(".")
    if head:
        if head.partition(".")[0] not in _DRIVERS:
            return None
        if last == "DataError" and head.startswith("asyncpg"):
            return "22000"  # asyncpg's argument check: its class carries 22000, psycopg's none
    elif last in _BUILTIN_COLLISIONS:
        return None
    return _BY_NAME.get(normalise(last))
